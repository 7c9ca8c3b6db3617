package main

import "github.com/kanade-go/kanade/node"

// schedulerFlags declares the scheduler flags of serve.
func schedulerFlags(f *flags) func(*node.Options) {
	return func(o *node.Options) {}
}
