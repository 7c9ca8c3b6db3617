package main

import "github.com/kanade-go/kanade/node"

// clusterFlags declares the cluster flags of serve.
func clusterFlags(f *flags) func(*node.Options) {
	return func(o *node.Options) {}
}
