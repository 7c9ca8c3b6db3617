package scripts

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

type cmdParams struct {
	CmdID string `json:"cmd_id"`
}

// Start starts the scripts and schemas micro services.
func Start(nc *nats.Conn, log *slog.Logger) ([]*api.Running, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st := &Status{JS: js}
	set := func(value string) api.Handler {
		return func(ctx context.Context, r api.Request) (any, error) {
			var p cmdParams
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			return nil, st.Set(ctx, p.CmdID, value)
		}
	}
	svcs := []api.Service{{
		Name:        "scripts",
		Description: "script_status: revoke and unrevoke what agents run",
		Logger:      log,
		Endpoints: []api.Endpoint{
			{Name: "status", Subject: "kanade.scripts.status", HTTP: "GET /api/scripts/status", Tier: api.TierViewer,
				Handler: func(ctx context.Context, r api.Request) (any, error) { return st.All(ctx) }},
			{Name: "revoke", Subject: "kanade.scripts.revoke", HTTP: "POST /api/scripts/{cmd_id}/revoke",
				Tier: api.TierOperator, Audit: "script_revoke", AuditTarget: "cmd_id", Handler: set(wire.ScriptRevoked)},
			{Name: "unrevoke", Subject: "kanade.scripts.unrevoke", HTTP: "POST /api/scripts/{cmd_id}/unrevoke",
				Tier: api.TierOperator, Audit: "script_unrevoke", AuditTarget: "cmd_id", Handler: set(wire.ScriptActive)},
		},
	}, {
		Name:        "schemas",
		Description: "JSON Schemas of the documents the API takes",
		Logger:      log,
		Endpoints: []api.Endpoint{
			{Name: "manifest", Subject: "kanade.schemas.manifest", HTTP: "GET /api/schemas/manifest.json", Tier: api.TierViewer,
				Handler: func(ctx context.Context, r api.Request) (any, error) { return ManifestSchema, nil }},
		},
	}}
	var out []*api.Running
	for _, s := range svcs {
		r, err := api.Start(nc, s)
		if err != nil {
			for _, o := range out {
				o.Stop()
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
