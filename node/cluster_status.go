package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/projector"
)

// Subjects of the cluster view.
const (
	// SubjectClusterStatus gathers every node's status (queue group, so
	// one node answers for all; GET /api/cluster).
	SubjectClusterStatus = "kanade.cluster.status"
	// SubjectNodeStatus is answered by every node, no queue group.
	SubjectNodeStatus = "kanade.cluster.node"
)

// NodeStatus is one node's answer on SubjectNodeStatus.
type NodeStatus struct {
	Node     string   `json:"node"`
	Services []string `json:"services"`
	// ResultsServing says whether this node's results, executions and
	// agents services are in their queue groups (see the results gate).
	ResultsServing bool              `json:"results_serving"`
	Projector      *projector.Status `json:"projector,omitempty"`
	Error          string            `json:"error,omitempty"`
	// Warnings are what the node's NATS lets in unexpectedly (see
	// securityWarnings): clients without credentials.
	Warnings []string `json:"warnings,omitempty"`
}

// ClusterStatus is the answer of SubjectClusterStatus.
type ClusterStatus struct {
	Nodes []NodeStatus `json:"nodes"`
}

// clusterDefinition is the cluster view's endpoint.
var clusterDefinition = api.Definition{Service: "cluster", Endpoints: []api.Endpoint{
	{Name: "status", Subject: SubjectClusterStatus, HTTP: "GET /api/cluster", Tier: api.TierViewer},
}}

// clusterView answers for this node and gathers the others.
type clusterView struct {
	nc       *nats.Conn
	node     string
	services []string
	gate     *resultsGate         // nil without results
	proj     *projector.Projector // nil without projector
	warnings []string
	sub      *nats.Subscription
	svc      *api.Running
}

func startClusterView(nc *nats.Conn, v *clusterView, log *slog.Logger) error {
	v.nc = nc
	sub, err := nc.Subscribe(SubjectNodeStatus, func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b, _ := json.Marshal(v.local(ctx))
		m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("cluster view: %w", err)
	}
	v.sub = sub
	svc, err := api.Start(nc, api.Service{
		Name:        clusterDefinition.Service,
		Description: "every node of the cluster: its services, whether it serves results, its projection",
		Metadata:    map[string]string{"node": v.node},
		Logger:      log,
		Workers:     2,
		Endpoints: clusterDefinition.Bind(map[string]api.Handler{
			"status": func(ctx context.Context, r api.Request) (any, error) {
				if err := api.Decode(r.Data, &struct{}{}); err != nil {
					return nil, err
				}
				return Gather(ctx, nc)
			},
		}),
	})
	if err != nil {
		sub.Unsubscribe()
		return err
	}
	v.svc = svc
	return nil
}

func (v *clusterView) stop() error {
	v.sub.Unsubscribe()
	return v.svc.Stop()
}

func (v *clusterView) local(ctx context.Context) NodeStatus {
	st := NodeStatus{Node: v.node, Services: v.services, Warnings: v.warnings}
	if v.gate != nil {
		st.ResultsServing = v.gate.serving()
	}
	if v.proj != nil {
		ps, err := v.proj.Status(ctx)
		if err != nil {
			st.Error = err.Error()
		} else {
			st.Projector = &ps
		}
	}
	return st
}

// Gather asks every node for its status. Nodes answer within milliseconds
// of each other; it stops 300 ms after the last answer, or at ctx's end.
func Gather(ctx context.Context, nc *nats.Conn) (ClusterStatus, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return ClusterStatus{}, fmt.Errorf("gather node status: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(SubjectNodeStatus, inbox, nil); err != nil {
		return ClusterStatus{}, fmt.Errorf("gather node status: %w", err)
	}
	out := ClusterStatus{Nodes: []NodeStatus{}}
	wait := 2 * time.Second // for the first answer
	for {
		mctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			break
		}
		var ns NodeStatus
		if err := json.Unmarshal(m.Data, &ns); err == nil {
			out.Nodes = append(out.Nodes, ns)
		}
		wait = 300 * time.Millisecond
	}
	if len(out.Nodes) == 0 && ctx.Err() != nil {
		return out, api.Unavailable("no node answered")
	}
	slices.SortFunc(out.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
