package main

import "github.com/kanade-go/kanade/node"

// projectorFlags declares the projector flags of serve.
func projectorFlags(f *flags) func(*node.Options) {
	return func(o *node.Options) {}
}
