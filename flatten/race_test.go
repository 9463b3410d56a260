//go:build race

package flatten

const raceEnabled = true
