package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
)

// Definitions are the audit service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "audit", Endpoints: []api.Endpoint{
		{Name: "list", Subject: "kanade.audit.list", HTTP: "GET /api/audit", IntParams: []string{"limit", "before"}, Tier: api.TierViewer},
		{Name: "verify", Subject: "kanade.audit.verify", HTTP: "GET /api/audit/verify", Tier: api.TierViewer},
	}}}
}

// Options configure the projection and the read service of a node with a
// store.
type Options struct {
	Conn     *nats.Conn
	DB       *store.DB
	Replicas int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service is the running projection and audit service.
type Service struct {
	svc  *api.Running
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Start projects AUDIT into audit_log and answers GET /api/audit and
// /api/audit/verify.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	stream, err := Ensure(ctx, js, o.Replicas)
	if err != nil {
		return nil, err
	}
	def := Definitions()[0]
	svc, err := api.Start(o.Conn, api.Service{
		Name: def.Service, Description: "the audit trail: who changed what, from where; its hash chain checked",
		Logger: o.Logger, Workers: 4,
		Endpoints: def.Bind(map[string]api.Handler{
			"list": func(ctx context.Context, r api.Request) (any, error) {
				var p ListParams
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return List(ctx, o.DB, p, int(o.Conn.MaxPayload())-4096)
			},
			"verify": func(ctx context.Context, r api.Request) (any, error) {
				return Verify(ctx, stream)
			},
		}),
	})
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.Background())
	s := &Service{svc: svc, stop: cancel}
	p := &projection{stream: stream, db: o.DB, log: o.Logger, now: o.Now}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); p.run(pctx) }()
	return s, nil
}

// Stop stops answering, then the projection.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.stop()
	s.wg.Wait()
	return err
}
