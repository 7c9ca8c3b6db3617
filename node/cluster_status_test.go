package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
)

// TestClusterStatusListsEveryNode runs two nodes on one NATS (external
// mode) and asks one of them for the cluster view.
func TestClusterStatusListsEveryNode(t *testing.T) {
	n := nodetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, name := range []string{"a", "b"} {
		ready := make(chan struct{})
		go func() {
			done <- Run(ctx, Options{
				DataDir: t.TempDir(), NATSURL: n.URL, NodeName: name, Logger: n.Logger,
				Services: []string{ServiceProjector, ServiceResults},
			}, func(Ready) { close(ready) })
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("node %s: %v", name, err)
		case <-time.After(60 * time.Second):
			t.Fatalf("node %s not ready", name)
		}
	}
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("node stopped with %v", err)
			}
		}
	}()

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	st, err := Gather(rctx, n.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 2 || st.Nodes[0].Node != "a" || st.Nodes[1].Node != "b" {
		t.Fatalf("nodes %+v, want a and b", st.Nodes)
	}
	for _, ns := range st.Nodes {
		if !ns.ResultsServing || ns.Projector == nil || ns.Projector.Node != ns.Node {
			t.Errorf("node %s: serving %v, projector %+v", ns.Node, ns.ResultsServing, ns.Projector)
		}
	}
	// The same view through the API subject, answered by either node.
	msg, err := n.Conn(t).Request(SubjectClusterStatus, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var viaAPI ClusterStatus
	if err := json.Unmarshal(msg.Data, &viaAPI); err != nil || msg.Header.Get("Nats-Service-Error") != "" {
		t.Fatalf("kanade.cluster.status: %q %v: %v", msg.Data, msg.Header, err)
	}
	if len(viaAPI.Nodes) != 2 || viaAPI.Nodes[0].Node != "a" || viaAPI.Nodes[1].Node != "b" {
		t.Fatalf("kanade.cluster.status nodes %+v, want a and b", viaAPI.Nodes)
	}
}
