package main

import "github.com/kanade-go/kanade/node"

// resultsFlags declares the results flags of serve.
func resultsFlags(f *flags) func(*node.Options) {
	return func(o *node.Options) {}
}
