package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinCPUs puts this process (every thread it has; threads it starts
// later inherit it) on the first half of the CPUs and returns the
// taskset list of the other half for the loader, so that the proxies
// and the load generator stop taking CPU from each other, as on two
// machines. It returns "" and pins nothing on a single CPU, or if the
// kernel refuses.
func pinCPUs() string {
	n := runtime.NumCPU()
	if n < 2 {
		return ""
	}
	var mine unix.CPUSet
	for i := range n / 2 {
		mine.Set(i)
	}
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return ""
	}
	for _, t := range tids {
		tid, err := strconv.Atoi(filepath.Base(t.Name()))
		if err != nil {
			continue
		}
		if unix.SchedSetaffinity(tid, &mine) != nil {
			return ""
		}
	}
	runtime.GOMAXPROCS(n / 2)
	list := strconv.Itoa(n / 2)
	if n/2 < n-1 {
		list += "-" + strconv.Itoa(n-1)
	}
	return list
}
