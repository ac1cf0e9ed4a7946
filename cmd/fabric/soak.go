package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/chimera-fabric/fabric/internal/loadgen"
)

var soakCmd = &command{
	name:    "soak",
	summary: "steady load for a while, failing if fabricd's memory, goroutines, open files or store grow without bound",
	maxArgs: 0,
	setup: func(c *cli, fs *flag.FlagSet) action {
		lf := &loadFlags{}
		lf.define(fs, string(loadgen.ModeSubmitWait), 2*time.Minute)
		sample := fs.Duration("sample", time.Second, "time between samples of fabricd's /metrics")
		warmup := fs.Duration("warmup", 0, "left out of the comparison (default: a sixth of --duration)")
		tolerance := fs.Float64("tolerance", 0.25, "growth allowed from the first third of the samples to the last, as a fraction, beyond a small absolute slack")
		settle := fs.Duration("settle", 15*time.Second, "how long goroutines and open files may take to come back down once the load ends")
		data := fs.String("data", "", "fabricd's --data `DIR`, to sample the store's size (when it is on this machine)")
		return func([]string) error {
			if lf.count > 0 {
				return usagef("--count: a soak runs for --duration; give that instead")
			}
			cfgs, err := lf.configs(c, flagSet(fs, "duration"))
			if err != nil {
				return err
			}
			if len(cfgs) != 1 || cfgs[0].Mode == loadgen.ModeEcho {
				return usagef("--mode: a soak takes one of submit-wait, submit-subscribe, submit, health; got %q", lf.modes)
			}
			if *sample <= 0 {
				return usagef("--sample: want a duration > 0; got %v", *sample)
			}
			if *warmup < 0 || *warmup >= lf.duration {
				return usagef("--warmup: want 0..%v (--duration); got %v", lf.duration, *warmup)
			}
			w := *warmup
			if w == 0 {
				w = lf.duration / 6
			}
			if n := (lf.duration - w) / *sample; n < 6 {
				return usagef("--duration %v after a %v warm-up holds %d samples at one per %v (--sample); want at least 6", lf.duration, w, n, *sample)
			}
			if *tolerance < 0 {
				return usagef("--tolerance: want >= 0; got %v", *tolerance)
			}
			if err := lf.registerAgents(c); err != nil {
				return err
			}
			ctx, cancel := c.context(0)
			defer cancel()
			p := &progress{c: c, label: "soak " + string(cfgs[0].Mode)}
			sc := loadgen.SoakConfig{
				Load: cfgs[0], DataDir: *data, Interval: *sample, Warmup: *warmup,
				Tolerance: *tolerance, Settle: *settle,
			}
			if sc.Tolerance == 0 {
				sc.Tolerance = 1e-9 // 0 on the command line means none, not the default
			}
			if c.errTTY {
				sc.Load.Progress = p.show
			}
			rep, err := loadgen.Soak(ctx, sc)
			p.clear()
			if err != nil {
				return err
			}
			if c.json {
				b, _ := json.Marshal(rep)
				c.emit(b)
			} else {
				rep.WriteText(c.stdout)
			}
			if !rep.OK {
				msg := "the soak failed"
				if !rep.Load.OK() {
					msg += fmt.Sprintf(": the load: %s", rep.Load.Problem())
				}
				for _, ch := range rep.Checks {
					if !ch.OK {
						msg += fmt.Sprintf("; %s: %s", ch.Metric, ch.Note)
					}
				}
				return failedf("%s", msg)
			}
			return nil
		}
	},
}
