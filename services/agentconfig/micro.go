package agentconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// Options configure the config service.
type Options struct {
	Conn   *nats.Conn
	Logger *slog.Logger
	// Audit records each config change before it is made (nil: no trail).
	Audit api.Auditor
}

// Service is the running config service.
type Service struct {
	running *api.Running
}

// scopeRef names a scope by the request's parameters.
type scopeRef struct {
	Name  string  `json:"name"`
	PCID  string  `json:"pc_id"`
	Field string  `json:"field"`
	Value *string `json:"value"`
}

// scopes are the three config scopes, each with the same five routes.
var scopes = []struct{ name, path, target string }{
	{"global", "/api/config", ""},
	{"group", "/api/groups/{name}/config", "name"},
	{"pc", "/api/pcs/{pc_id}/config", "pc_id"},
}

// Definitions are the config service's endpoints.
func Definitions() []api.Definition {
	var eps []api.Endpoint
	for _, sc := range scopes {
		subj := "kanade.config." + sc.name
		eps = append(eps,
			api.Endpoint{Name: sc.name + "_get", Subject: subj + "_get", HTTP: "GET " + sc.path, Tier: api.TierViewer},
			api.Endpoint{Name: sc.name + "_put", Subject: subj + "_put", HTTP: "PUT " + sc.path, Tier: api.TierOperator,
				Audit: "config_scope_put", AuditTarget: sc.target},
			api.Endpoint{Name: sc.name + "_delete", Subject: subj + "_delete", HTTP: "DELETE " + sc.path, Tier: api.TierOperator,
				Audit: "config_scope_clear", AuditTarget: sc.target},
			api.Endpoint{Name: sc.name + "_field_set", Subject: subj + "_field_set", HTTP: "PUT " + sc.path + "/fields/{field}", Tier: api.TierOperator,
				Audit: "config_field_set", AuditTarget: sc.target},
			api.Endpoint{Name: sc.name + "_field_unset", Subject: subj + "_field_unset", HTTP: "DELETE " + sc.path + "/fields/{field}", Tier: api.TierOperator,
				Audit: "config_field_unset", AuditTarget: sc.target},
		)
	}
	eps = append(eps,
		api.Endpoint{Name: "defaults", Subject: "kanade.config.defaults", HTTP: "GET /api/config/defaults", Tier: api.TierViewer},
		api.Endpoint{Name: "group_inherited", Subject: "kanade.config.group_inherited", HTTP: "GET /api/groups/{name}/config/inherited", Tier: api.TierViewer},
		api.Endpoint{Name: "pc_inherited", Subject: "kanade.config.pc_inherited", HTTP: "GET /api/pcs/{pc_id}/config/inherited", Tier: api.TierViewer},
		api.Endpoint{Name: "effective", Subject: "kanade.config.effective", HTTP: "GET /api/agents/{pc_id}/effective_config", Tier: api.TierViewer},
	)
	return []api.Definition{{Service: "config", Endpoints: eps}}
}

// Start registers the config micro service.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Conn == nil {
		return nil, errors.New("agentconfig: a NATS connection is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("agentconfig: jetstream: %w", err)
	}
	st := Store{}
	if kv, err := js.KeyValue(ctx, wire.BucketAgentConfig); err == nil {
		st.KV = kv
	}
	if kv, err := js.KeyValue(ctx, wire.BucketAgentGroups); err == nil {
		st.Groups = kv
	}
	// key reads the scope a request names: global, a group's or a PC's.
	type keyFunc func(scopeRef) (string, error)
	global := func(scopeRef) (string, error) { return GlobalKey, nil }
	group := func(p scopeRef) (string, error) {
		if !wire.ValidToken(p.Name) {
			return "", api.BadRequest("invalid group name %q", p.Name)
		}
		return GroupKey(p.Name), nil
	}
	pc := func(p scopeRef) (string, error) {
		if !wire.ValidToken(p.PCID) {
			return "", api.BadRequest("invalid pc_id %q", p.PCID)
		}
		return PCKey(p.PCID), nil
	}
	ref := func(r api.Request, k keyFunc) (scopeRef, string, error) {
		var p scopeRef
		if err := api.Params(r, &p); err != nil {
			return p, "", err
		}
		key, err := k(p)
		return p, key, err
	}
	keys := map[string]keyFunc{"global": global, "group": group, "pc": pc}
	handlers := map[string]api.Handler{}
	// The same five routes on each of the three scopes.
	for _, sc := range scopes {
		k := keys[sc.name]
		sc := sc
		handlers[sc.name+"_get"] = func(ctx context.Context, r api.Request) (any, error) {
			_, key, err := ref(r, k)
			if err != nil {
				return nil, err
			}
			return st.Get(ctx, key)
		}
		handlers[sc.name+"_put"] = func(ctx context.Context, r api.Request) (any, error) {
			_, key, err := ref(r, k)
			if err != nil {
				return nil, err
			}
			return st.Put(ctx, key, scopeBody(r, sc.target))
		}
		handlers[sc.name+"_delete"] = func(ctx context.Context, r api.Request) (any, error) {
			_, key, err := ref(r, k)
			if err != nil {
				return nil, err
			}
			return nil, st.Delete(ctx, key)
		}
		handlers[sc.name+"_field_set"] = func(ctx context.Context, r api.Request) (any, error) {
			p, key, err := ref(r, k)
			if err != nil {
				return nil, err
			}
			if p.Value == nil {
				return nil, api.Errorf(422, "missing field `value`")
			}
			return st.SetField(ctx, key, p.Field, *p.Value)
		}
		handlers[sc.name+"_field_unset"] = func(ctx context.Context, r api.Request) (any, error) {
			p, key, err := ref(r, k)
			if err != nil {
				return nil, err
			}
			return st.UnsetField(ctx, key, p.Field)
		}
	}
	handlers["defaults"] = func(context.Context, api.Request) (any, error) { return Defaults(), nil }
	handlers["group_inherited"] = func(ctx context.Context, r api.Request) (any, error) { return st.GroupInherited(ctx) }
	handlers["pc_inherited"] = func(ctx context.Context, r api.Request) (any, error) {
		p, _, err := ref(r, pc)
		if err != nil {
			return nil, err
		}
		return st.PCInherited(ctx, p.PCID)
	}
	handlers["effective"] = func(ctx context.Context, r api.Request) (any, error) {
		p, _, err := ref(r, pc)
		if err != nil {
			return nil, err
		}
		return st.EffectiveFor(ctx, p.PCID)
	}
	def := Definitions()[0]
	running, err := api.Start(o.Conn, api.Service{
		Name: def.Service, Description: "layered agent config in KV agent_config: global < groups < PC",
		Logger: o.Logger, Audit: o.Audit, Endpoints: def.Bind(handlers),
	})
	if err != nil {
		return nil, fmt.Errorf("agentconfig: %w", err)
	}
	return &Service{running: running}, nil
}

// Stop stops answering.
func (s *Service) Stop() error {
	if s == nil || s.running == nil {
		return nil
	}
	return s.running.Stop()
}

// scopeBody is the scope a PUT carries. Through the gateway the body is the
// client's, the path parameters in headers. A NATS caller puts the
// parameter (name or pc_id) in the body beside the fields: it is not part
// of the scope.
func scopeBody(r api.Request, param string) []byte {
	if param == "" || r.Header.Get(api.ParamHeaderPrefix+param) != "" {
		return r.Data
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(r.Data, &m) != nil {
		return r.Data
	}
	delete(m, param)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(m)
	return bytes.TrimSpace(b.Bytes())
}
