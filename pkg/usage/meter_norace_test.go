//go:build !race

package usage

// meterRaceEnabled reports whether the race detector, which adds
// allocations of its own, is on.
const meterRaceEnabled = false
