package main

import (
	"strings"

	"github.com/kanade-go/kanade/embedded"
	"github.com/kanade-go/kanade/node"
)

// clusterFlags declares the cluster flags of serve: embedded clustering
// and the account of the in-process connections under --nats-config.
func clusterFlags(f *flags) func(*node.Options) {
	listen := f.String("cluster-listen", "", "route listener host:port of the embedded NATS; with --cluster-routes, nodes' embedded servers form one JetStream cluster")
	routes := f.String("cluster-routes", "", "comma list of nats://host:port route URLs of the cluster's nodes (this node's own may be listed)")
	name := f.String("cluster-name", embedded.DefaultClusterName, "cluster name, the same on every node of one cluster")
	joinLag := f.Duration("results-join-lag", node.DefaultResultsJoinLag, "this node's results, executions and agents services join their queue groups once its projection is current, or within this of the streams' heads for as long")
	leaveLag := f.Duration("results-leave-lag", node.DefaultResultsLeaveLag, "and leave them while the projection is further behind than this")
	account := f.String("nats-account", "", "with --nats-config using accounts: the account the backend's in-process connections join")
	return func(o *node.Options) {
		o.NATSAccount = *account
		o.ResultsJoinLag, o.ResultsLeaveLag = *joinLag, *leaveLag
		// embedded.Start checks each route and names a bad one.
		o.Cluster = embedded.Cluster{Listen: *listen, Name: *name}
		if *routes != "" {
			o.Cluster.Routes = strings.Split(*routes, ",")
		}
	}
}
