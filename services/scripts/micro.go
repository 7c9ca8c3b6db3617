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

// Definitions are the endpoints of the scripts and schemas services.
func Definitions() []api.Definition {
	return []api.Definition{
		{Service: "scripts", Endpoints: []api.Endpoint{
			{Name: "status", Subject: "kanade.scripts.status", HTTP: "GET /api/scripts/status", Tier: api.TierViewer},
			{Name: "revoke", Subject: "kanade.scripts.revoke", HTTP: "POST /api/scripts/{cmd_id}/revoke",
				Tier: api.TierOperator, Audit: "script_revoke", AuditTarget: "cmd_id"},
			{Name: "unrevoke", Subject: "kanade.scripts.unrevoke", HTTP: "POST /api/scripts/{cmd_id}/unrevoke",
				Tier: api.TierOperator, Audit: "script_unrevoke", AuditTarget: "cmd_id"},
		}},
		{Service: "schemas", Endpoints: []api.Endpoint{
			{Name: "manifest", Subject: "kanade.schemas.manifest", HTTP: "GET /api/schemas/manifest.json", Tier: api.TierViewer},
		}},
	}
}

// Start starts the scripts and schemas micro services; aud records each
// revoke and unrevoke before it is made (nil: no trail).
func Start(nc *nats.Conn, log *slog.Logger, aud api.Auditor) ([]*api.Running, error) {
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
	defs := Definitions()
	svcs := []api.Service{{
		Name:        defs[0].Service,
		Description: "script_status: revoke and unrevoke what agents run",
		Logger:      log,
		Audit:       aud,
		Endpoints: defs[0].Bind(map[string]api.Handler{
			"status":   func(ctx context.Context, r api.Request) (any, error) { return st.All(ctx) },
			"revoke":   set(wire.ScriptRevoked),
			"unrevoke": set(wire.ScriptActive),
		}),
	}, {
		Name:        defs[1].Service,
		Description: "JSON Schemas of the documents the API takes",
		Logger:      log,
		Endpoints: defs[1].Bind(map[string]api.Handler{
			"manifest": func(ctx context.Context, r api.Request) (any, error) { return ManifestSchema, nil },
		}),
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
