package main

import (
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/services/results"
)

// resultsFlags declares the results flags of serve (the results,
// executions and agents services).
func resultsFlags(f *flags) func(*node.Options) {
	tail := f.Duration("tail-timeout", results.DefaultTailTimeout, "how long a live tail waits for the agent before answering \"waiting\"")
	heavy := f.Int("results-searches", 4, "list queries with regex or status filters that may run at once (the rest wait); detail, tail and plain lists are never held behind them")
	return func(o *node.Options) {
		o.Results.TailTimeout = *tail
		o.Results.HeavyQueries = *heavy
	}
}
