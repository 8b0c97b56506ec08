//go:build !unix

package main

import "time"

// cpuTime is not measured where getrusage is missing: the CPU row shows 0.
func cpuTime() time.Duration { return 0 }
