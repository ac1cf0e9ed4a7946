// Command fsyncfloor measures the floor under a durable commit on this
// disk: n pages of 4 KiB (plus a WAL frame header) written with pwrite at
// the end of a log file, then fsync, as SQLite's WAL commit does.
//
//	go run ./bench/fsyncfloor DIR
//
// A task acknowledged durably waits for at least one such commit, shared
// by everything in it; the durable store's commits are compared with it in
// BENCHMARKS.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fsyncfloor DIR (a directory on the disk to measure)")
		os.Exit(2)
	}
	f, err := os.CreateTemp(os.Args[1], "fsyncfloor-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsyncfloor:", err)
		os.Exit(1)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	frame := make([]byte, 4096+24)
	for _, pages := range []int{1, 16, 64} {
		var ds []time.Duration
		off := int64(0)
		for range 1000 {
			began := time.Now()
			for range pages {
				if _, err := f.WriteAt(frame, off); err != nil {
					fmt.Fprintln(os.Stderr, "fsyncfloor:", err)
					os.Exit(1)
				}
				off += int64(len(frame))
			}
			if err := f.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, "fsyncfloor:", err)
				os.Exit(1)
			}
			ds = append(ds, time.Since(began))
			if off > 64<<20 {
				off = 0 // a log that starts over, as the WAL does
			}
		}
		slices.Sort(ds)
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		fmt.Printf("%s: %2d pages + fsync: mean %v, p50 %v, p90 %v\n", filepath.Base(os.Args[1]), pages,
			(sum / time.Duration(len(ds))).Round(time.Microsecond), ds[len(ds)/2].Round(time.Microsecond), ds[len(ds)*9/10].Round(time.Microsecond))
	}
}
