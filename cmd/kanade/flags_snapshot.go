package main

import (
	"fmt"
	"time"

	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/services/snapshot"
)

// snapshotFlags declares the flags of serve for the projection at fleet
// scale: snapshots, history gaps, compressed outputs.
func snapshotFlags(f *flags) func(*node.Options) {
	const name = "snapshot-interval"
	every := retention(snapshot.DefaultInterval)
	if v := f.envDefault(name, ""); v != "" {
		if err := every.Set(v); err != nil {
			f.errs = append(f.errs, fmt.Sprintf("%s=%q: %v", envName(name), v, err))
		}
	}
	f.FlagSet.Var(&every, name, `one node of the cluster snapshots its projection into the object store this often (e.g. 6h, 1d; 0 or "off": only "kanade snapshot") (env `+envName(name)+`)`)
	keep := f.Int("snapshot-keep", snapshot.DefaultKeep, "snapshots kept in the object store")
	compress := f.Bool("compress-outputs", true, "store results' stdout and stderr zstd-compressed (false: plain text; either way both forms are read)")
	accept := f.Bool("accept-history-gap", false, "accept history the streams lost before this node's projection applied it: its read services join their queue groups although it lacks those results")
	return func(o *node.Options) {
		o.Snapshot.Interval = time.Duration(every)
		if every == 0 {
			o.Snapshot.Interval = -1
		}
		o.Snapshot.Keep = *keep
		o.Projector.AcceptGaps = *accept
		o.Projector.PlainOutputs = !*compress
	}
}
