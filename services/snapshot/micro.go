package snapshot

import (
	"context"
	"errors"
	"time"

	"github.com/kanade-go/kanade/services/api"
)

// Subjects of the service.
const (
	SubjectCreate = "kanade.snapshot.create"
	SubjectList   = "kanade.snapshot.list"
)

// serviceTimeout bounds an on-demand snapshot: VACUUM INTO and the upload
// of a large projection take minutes; the gateway waits as long on the
// route, and `kanade snapshot` too.
const serviceTimeout = 30 * time.Minute

// Definitions are the snapshot service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "snapshot", Endpoints: []api.Endpoint{
		{Name: "create", Subject: SubjectCreate, HTTP: "POST /api/snapshots", Tier: api.TierAdmin,
			Audit: "snapshot.create", Timeout: serviceTimeout},
		{Name: "list", Subject: SubjectList, HTTP: "GET /api/snapshots", Tier: api.TierAdmin},
	}}}
}

func (s *Snapshotter) startService() (*api.Running, error) {
	def := Definitions()[0]
	return api.Start(s.o.Conn, api.Service{
		Name:        def.Service,
		Description: "snapshots of the SQLite projection in the object store " + Bucket,
		Metadata:    map[string]string{"node": s.o.NodeName},
		Logger:      s.log,
		Workers:     2,
		Timeout:     serviceTimeout,
		Audit:       s.o.Audit,
		Endpoints: def.Bind(map[string]api.Handler{
			"create": func(ctx context.Context, r api.Request) (any, error) {
				if err := api.Decode(r.Data, &struct{}{}); err != nil {
					return nil, err
				}
				info, err := s.Take(ctx)
				if errors.Is(err, ErrNotReady) {
					return nil, api.Unavailable("%v", err)
				}
				return info, err
			},
			"list": func(ctx context.Context, r api.Request) (any, error) {
				if err := api.Decode(r.Data, &struct{}{}); err != nil {
					return nil, err
				}
				list, err := List(ctx, s.obj)
				if err != nil {
					return nil, api.Unavailable("%v", err)
				}
				return map[string]any{"snapshots": list}, nil
			},
		}),
	})
}
