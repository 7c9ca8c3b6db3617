package main

import "github.com/kanade-go/kanade/node"

// gatewayFlags declares the gateway flags of serve.
func gatewayFlags(f *flags) func(*node.Options) {
	return func(o *node.Options) {}
}
