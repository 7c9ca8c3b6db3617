package embedded

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster joins the embedded server to other kanade nodes' embedded
// servers: nats-server's own route clustering, so that three nodes form one
// JetStream cluster (replicated streams, one meta leader) with no separate
// NATS to install.
type Cluster struct {
	// Listen is the route listener "host:port" other nodes dial. Empty
	// means no clustering (the other fields are then ignored).
	Listen string
	// Routes are the nats://host:port route URLs of the cluster's nodes.
	// Listing this node's own address is fine (nats-server ignores a route
	// to itself), so every node can be given the same list.
	Routes []string
	// Name is the cluster name; every node of one cluster uses the same.
	Name string
}

// DefaultClusterName is the cluster name when none is given.
const DefaultClusterName = "kanade"

// ParseRoutes splits a comma list of route URLs and checks each one.
func ParseRoutes(s string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls") {
			return nil, fmt.Errorf("route %q: want nats://host:port", r)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("route %q: %w", r, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// apply sets the cluster listener, name and routes on opts (overriding any
// cluster block of a config file). The ServerName must already differ per
// node: JetStream identifies peers by it.
func (c Cluster) apply(opts *server.Options) error {
	if c.Listen == "" {
		if len(c.Routes) > 0 {
			return fmt.Errorf("embedded nats: cluster routes given without a cluster listen address")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("embedded nats: cluster listen address %q: %w", c.Listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("embedded nats: cluster listen port %q: %w", port, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if p == 0 {
		p = -1 // nats-server's "pick a free port"
	} else {
		// As with the client port: a busy port would only be logged.
		l, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("embedded nats: cluster listen %s: %w", c.Listen, err)
		}
		l.Close()
	}
	routes, err := ParseRoutes(strings.Join(c.Routes, ","))
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	name := c.Name
	if name == "" {
		name = DefaultClusterName
	}
	opts.Cluster.Host, opts.Cluster.Port, opts.Cluster.Name = host, p, name
	if len(routes) > 0 {
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	return nil
}

// ClusterURL is the route URL other nodes list in their routes, or "" when
// the server is not clustered.
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats://" + a.String()
}

// WaitJetStream waits until JetStream can take API requests: at once for a
// single server; for a clustered one, until the meta group has a leader
// and this server is current with it (a quorum of the nodes is up).
// Without it, the first stream lookups would each wait out their timeout.
func (s *Server) WaitJetStream(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !s.ns.JetStreamIsCurrent() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("embedded nats: no JetStream meta leader: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// WaitStreamsCurrent waits until this server's replicas of the named
// streams have caught up with their leaders (at once when not clustered).
// A node restarted after a crash must not read its own replica before
// then: a consumer led from a stale replica reports "nothing pending"
// while the stream has moved on. account "" is the global account.
func (s *Server) WaitStreamsCurrent(ctx context.Context, account string, names ...string) error {
	if account == "" {
		account = server.DEFAULT_GLOBAL_ACCOUNT
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for _, name := range names {
		for !s.ns.JetStreamIsStreamCurrent(account, name) {
			// A server with no replica of the stream (a node added beyond
			// the replica count) reads it from its leader: nothing to wait
			// for. Asked only once the meta layer is current, so that the
			// stream assignments it answers from are.
			if s.ns.JetStreamIsCurrent() && !s.ns.JetStreamIsStreamAssigned(account, name) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("embedded nats: replica of stream %s not current: %w", name, ctx.Err())
			case <-t.C:
			}
		}
	}
	return nil
}
