//go:build !unix

package main

import "time"

// cpuTime is unknown here; rates per core are then left out.
func cpuTime() time.Duration { return 0 }
