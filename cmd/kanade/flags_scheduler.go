package main

import "github.com/kanade-go/kanade/node"

// schedulerFlags declares the scheduler flags of serve.
func schedulerFlags(f *flags) func(*node.Options) {
	workers := f.Int("scheduler-workers", 128, "scheduled fires (and catch-ups) in flight at once; each waits on NATS round trips, not CPU")
	return func(o *node.Options) {
		o.Scheduler.Workers = *workers
	}
}
