//go:build !linux

package main

// pinCPUs pins nothing where the kernel has no sched_setaffinity.
func pinCPUs() string { return "" }
