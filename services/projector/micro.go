package projector

import (
	"context"

	"github.com/kanade-go/kanade/services/api"
)

// SubjectStatus is the status endpoint's subject.
const SubjectStatus = "kanade.projector.status"

// Definitions are the projector service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "projector", Endpoints: []api.Endpoint{
		{Name: "status", Subject: SubjectStatus, HTTP: "GET /api/projector/status", Tier: api.TierViewer},
	}}}
}

func (p *Projector) startService() (*api.Running, error) {
	def := Definitions()[0]
	return api.Start(p.o.Conn, api.Service{
		Name:        def.Service,
		Description: "JetStream streams into the SQLite projection, exactly once",
		Metadata:    map[string]string{"node": p.o.NodeName},
		Logger:      p.log,
		Workers:     2,
		Endpoints: def.Bind(map[string]api.Handler{
			"status": func(ctx context.Context, r api.Request) (any, error) {
				if err := api.Decode(r.Data, &struct{}{}); err != nil {
					return nil, err
				}
				st, err := p.Status(ctx)
				if err != nil {
					return nil, api.Unavailable("%v", err)
				}
				return st, nil
			},
		}),
	})
}
