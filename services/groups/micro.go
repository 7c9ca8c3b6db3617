package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Options configure the groups service.
type Options struct {
	Conn   *nats.Conn
	DB     *store.DB // the projection dynamic groups query; nil: none
	Roster *Roster   // shared with the scheduler; nil: Start makes one
	Logger *slog.Logger
	// Replicas of the buckets created on first use (group_defs).
	Replicas int
	// Materialize runs the materializer of agent_groups_derived here.
	Materialize bool
	// MaterializeEvery is its interval (default 60 s).
	MaterializeEvery time.Duration
	// Audit records each membership, contacts and definition change before
	// it is made (nil: no trail).
	Audit api.Auditor
}

// Service is the running groups service.
type Service struct {
	Roster  *Roster
	Defs    *Defs
	running *api.Running
	own     bool // Roster was made here
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Definitions are the groups service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "groups", Endpoints: []api.Endpoint{
		{Name: "list", Subject: "kanade.groups.list", HTTP: "GET /api/groups", Tier: api.TierViewer},
		{Name: "pc_get", Subject: "kanade.groups.pc_get", HTTP: "GET /api/agents/{pc_id}/groups", Tier: api.TierViewer},
		{Name: "pc_put", Subject: "kanade.groups.pc_put", HTTP: "PUT /api/agents/{pc_id}/groups", Tier: api.TierOperator, Audit: "agent_groups_put", AuditTarget: "pc_id"},
		{Name: "pc_add", Subject: "kanade.groups.pc_add", HTTP: "POST /api/agents/{pc_id}/groups", Tier: api.TierOperator, Audit: "agent_groups_add", AuditTarget: "pc_id"},
		{Name: "pc_remove", Subject: "kanade.groups.pc_remove", HTTP: "DELETE /api/agents/{pc_id}/groups/{group}", Tier: api.TierOperator, Audit: "agent_groups_remove", AuditTarget: "pc_id"},
		{Name: "email_get", Subject: "kanade.groups.email_get", HTTP: "GET /api/groups/{name}/email", Tier: api.TierViewer},
		{Name: "email_put", Subject: "kanade.groups.email_put", HTTP: "PUT /api/groups/{name}/email", Tier: api.TierOperator, Audit: "group_contacts_put", AuditTarget: "name"},
		{Name: "defs_list", Subject: "kanade.groups.defs_list", HTTP: "GET /api/group-defs", Tier: api.TierViewer},
		{Name: "defs_put", Subject: "kanade.groups.defs_put", HTTP: "POST /api/group-defs", Tier: api.TierOperator, Audit: "group_def_upsert", AuditTarget: "id"},
		{Name: "defs_yaml", Subject: "kanade.groups.defs_yaml", HTTP: "GET /api/group-defs/{id}/yaml", Tier: api.TierViewer},
		{Name: "defs_members", Subject: "kanade.groups.defs_members", HTTP: "GET /api/group-defs/{id}/members", Tier: api.TierViewer},
		{Name: "defs_delete", Subject: "kanade.groups.defs_delete", HTTP: "DELETE /api/group-defs/{id}", Tier: api.TierOperator, Audit: "group_def_delete", AuditTarget: "id"},
		{Name: "defs_schema", Subject: "kanade.schemas.group_def", HTTP: "GET /api/schemas/group-def.json", Tier: api.TierViewer},
	}}}
}

// Start registers the groups micro service.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Conn == nil {
		return nil, errors.New("groups: a NATS connection is required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("groups: jetstream: %w", err)
	}
	s := &Service{Roster: o.Roster, Defs: &Defs{JS: js, DB: o.DB, Replicas: o.Replicas}}
	if s.Roster == nil {
		s.Roster, err = OpenRoster(ctx, js, o.DB, o.Logger)
		if err != nil {
			return nil, err
		}
		s.own = true
	}
	kv := func(name string) jetstream.KeyValue {
		b, err := js.KeyValue(ctx, name)
		if err != nil {
			return nil
		}
		return b
	}
	m := Membership{KV: kv(wire.BucketAgentGroups)}
	// The config and contacts buckets may appear after start (contacts is
	// made by whoever writes one first): looked up until found.
	var lazyMu sync.Mutex
	lazy := map[string]jetstream.KeyValue{}
	lazyKV := func(name string) jetstream.KeyValue {
		lazyMu.Lock()
		defer lazyMu.Unlock()
		if lazy[name] == nil {
			lazy[name] = kv(name)
		}
		return lazy[name]
	}
	byPC := func(r api.Request) (string, error) {
		var p struct {
			PCID string `json:"pc_id"`
		}
		err := api.Params(r, &p)
		return p.PCID, err
	}
	byID := func(r api.Request) (string, error) {
		var p struct {
			ID string `json:"id"`
		}
		err := api.Params(r, &p)
		return p.ID, err
	}
	svc := api.Service{
		Name: Definitions()[0].Service, Description: "group membership per PC (agent_groups), group definitions, the groups overview",
		Logger: o.Logger, Workers: 8, Audit: o.Audit,
		Endpoints: Definitions()[0].Bind(map[string]api.Handler{
			"list": func(ctx context.Context, r api.Request) (any, error) {
				return List(ctx, s.Roster, lazyKV(wire.BucketAgentConfig), lazyKV(BucketGroupContacts)), nil
			},
			"pc_get": func(ctx context.Context, r api.Request) (any, error) {
				pc, err := byPC(r)
				if err != nil {
					return nil, err
				}
				return m.Get(ctx, pc)
			},
			"pc_put": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					PCID   string    `json:"pc_id"`
					Groups *[]string `json:"groups"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				if p.Groups == nil {
					return nil, api.Errorf(http.StatusUnprocessableEntity, "missing field `groups`")
				}
				return m.Put(ctx, p.PCID, *p.Groups)
			},
			"pc_add": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					PCID  string  `json:"pc_id"`
					Group *string `json:"group"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				if p.Group == nil {
					return nil, api.Errorf(http.StatusUnprocessableEntity, "missing field `group`")
				}
				return m.Add(ctx, p.PCID, *p.Group)
			},
			"pc_remove": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					PCID  string `json:"pc_id"`
					Group string `json:"group"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return m.Remove(ctx, p.PCID, p.Group)
			},
			"email_get": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					Name string `json:"name"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				return GetContacts(ctx, lazyKV(BucketGroupContacts), p.Name)
			},
			"email_put": func(ctx context.Context, r api.Request) (any, error) {
				var p struct {
					Name   string    `json:"name"`
					Emails *[]string `json:"emails"`
				}
				if err := api.Params(r, &p); err != nil {
					return nil, err
				}
				if p.Emails == nil {
					return nil, api.Errorf(http.StatusUnprocessableEntity, "missing field `emails`")
				}
				return PutContacts(ctx, lazyKV(BucketGroupContacts), p.Name, *p.Emails)
			},
			"defs_list": func(ctx context.Context, r api.Request) (any, error) { return s.Defs.List(ctx) },
			"defs_schema": func(context.Context, api.Request) (any, error) {
				return json.RawMessage(groupDefSchema), nil
			},
			"defs_put": func(ctx context.Context, r api.Request) (any, error) {
				return s.Defs.Put(ctx, r.Data, r.ContentType())
			},
			"defs_yaml": func(ctx context.Context, r api.Request) (any, error) {
				id, err := byID(r)
				if err != nil {
					return nil, err
				}
				return s.Defs.YAML(ctx, id)
			},
			"defs_members": func(ctx context.Context, r api.Request) (any, error) {
				id, err := byID(r)
				if err != nil {
					return nil, err
				}
				return s.Defs.Members(ctx, id)
			},
			"defs_delete": func(ctx context.Context, r api.Request) (any, error) {
				id, err := byID(r)
				if err != nil {
					return nil, err
				}
				return nil, s.Defs.Delete(ctx, id)
			},
		}),
	}
	s.running, err = api.Start(o.Conn, svc)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("groups: %w", err)
	}
	if o.Materialize {
		derived := kv(wire.BucketAgentGroupsDerived)
		if derived == nil {
			s.Stop()
			return nil, fmt.Errorf("groups: kv %s missing", wire.BucketAgentGroupsDerived)
		}
		mat := &Materializer{Defs: s.Defs, Derived: derived, Interval: o.MaterializeEvery, Log: o.Logger}
		bg, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go func() { defer s.wg.Done(); mat.Run(bg) }()
	}
	return s, nil
}

// OpenRoster starts a Roster on the two membership buckets of js.
func OpenRoster(ctx context.Context, js jetstream.JetStream, db *store.DB, log *slog.Logger) (*Roster, error) {
	manual, err := js.KeyValue(ctx, wire.BucketAgentGroups)
	if err != nil {
		return nil, fmt.Errorf("roster: kv %s: %w", wire.BucketAgentGroups, err)
	}
	derived, err := js.KeyValue(ctx, wire.BucketAgentGroupsDerived)
	if err != nil {
		// A bucket from before derived groups existed: manual only.
		derived = nil
	}
	return StartRoster(ctx, manual, derived, db, log)
}

// Stop stops answering, the materializer, and a roster made here.
func (s *Service) Stop() error {
	if s == nil {
		return nil
	}
	var err error
	if s.running != nil {
		err = s.running.Stop()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.own {
		s.Roster.Stop()
	}
	return err
}
