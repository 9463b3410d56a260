//go:build !unix

package rows

import "time"

// cpuTime is unavailable here; benchmarks report wall-clock rates only.
func cpuTime() time.Duration { return 0 }
