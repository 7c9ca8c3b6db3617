package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/groups"
	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// Options configure the agents service.
type Options struct {
	Conn   *nats.Conn
	DB     *store.DB
	Logger *slog.Logger
	// Roster gives each row its groups (shared with the groups service);
	// nil: Start opens one of its own.
	Roster *groups.Roster
	// Workers bounds concurrent requests (default 16): a ping or a logs
	// fetch waits seconds on an agent.
	Workers int
	// Timeout is each read's deadline (default 9 s, under the gateway's
	// 10 s). Ping and logs have LiveTimeout, and their routes tell the
	// gateway to wait that long.
	Timeout time.Duration
	// Audit records each forget, ping and metadata change before it is
	// made (nil: no trail).
	Audit api.Auditor
}

// Service is the running agents service.
type Service struct {
	Meta      *Meta
	roster    *groups.Roster
	ownRoster bool
	running   *api.Running
	forget    *nats.Subscription
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Definitions are the agents service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "agents", Endpoints: []api.Endpoint{
		{Name: "list", Subject: "kanade.agents.list", HTTP: "GET /api/agents", IntParams: []string{"limit", "offset"}, Tier: api.TierViewer, Paged: true},
		{Name: "versions", Subject: "kanade.agents.versions", HTTP: "GET /api/agents/versions", Tier: api.TierViewer},
		{Name: "meta_keys", Subject: "kanade.agents.meta_keys", HTTP: "GET /api/agents/meta-keys", Tier: api.TierViewer},
		{Name: "meta_bulk", Subject: "kanade.agents.meta_bulk", HTTP: "GET /api/agents/meta", Tier: api.TierViewer},
		{Name: "detail", Subject: "kanade.agents.detail", HTTP: "GET /api/agents/{pc_id}", Tier: api.TierViewer},
		{Name: "delete", Subject: "kanade.agents.delete", HTTP: "DELETE /api/agents/{pc_id}", Tier: api.TierOperator, Audit: "agent_delete", AuditTarget: "pc_id"},
		{Name: "ping", Subject: "kanade.agents.ping", HTTP: "POST /api/agents/{pc_id}/ping", IntParams: []string{"wait_secs"}, Tier: api.TierOperator, Timeout: LiveTimeout, Audit: "agent_ping", AuditTarget: "pc_id"},
		{Name: "logs", Subject: "kanade.agents.logs", HTTP: "GET /api/agents/{pc_id}/logs", IntParams: []string{"tail"}, Tier: api.TierViewer, Timeout: LiveTimeout},
		{Name: "meta_get", Subject: "kanade.agents.meta_get", HTTP: "GET /api/agents/{pc_id}/meta", Tier: api.TierViewer},
		{Name: "meta_put", Subject: "kanade.agents.meta_put", HTTP: "PUT /api/agents/{pc_id}/meta", Tier: api.TierOperator, Audit: "agent_meta_put", AuditTarget: "pc_id"},
		{Name: "meta_set", Subject: "kanade.agents.meta_set", HTTP: "PUT /api/agents/{pc_id}/meta/key", Tier: api.TierOperator, Audit: "agent_meta_set", AuditTarget: "pc_id"},
		{Name: "meta_rm", Subject: "kanade.agents.meta_rm", HTTP: "DELETE /api/agents/{pc_id}/meta/key", Tier: api.TierOperator, Audit: "agent_meta_rm", AuditTarget: "pc_id"},
	}}}
}

// Start registers the agents micro service.
func Start(ctx context.Context, o Options) (*Service, error) {
	if o.Conn == nil || o.DB == nil {
		return nil, errors.New("agents: a NATS connection and a store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 9 * time.Second
	}
	// All but ping and logs keep the usual, shorter deadline inside the service's.
	bounded := func(h api.Handler) api.Handler {
		return func(ctx context.Context, r api.Request) (any, error) {
			ctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			return h(ctx, r)
		}
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("agents: jetstream: %w", err)
	}
	s := &Service{}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	var metaKV jetstream.KeyValue
	if kv, err := js.KeyValue(ctx, wire.BucketAgentMeta); err == nil {
		metaKV = kv
	} else {
		o.Logger.Warn("agents: kv agent_meta missing; metadata routes answer 503", "err", err)
	}
	s.Meta, err = WatchMeta(ctx, bg, metaKV, &s.wg, o.Logger)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("agents: %w", err)
	}
	s.roster = o.Roster
	if s.roster == nil {
		if s.roster, err = groups.OpenRoster(ctx, js, o.DB, o.Logger); err != nil {
			s.Stop()
			return nil, fmt.Errorf("agents: %w", err)
		}
		s.ownRoster = true
	}
	// A PC forgotten on any node is forgotten here too.
	s.forget, err = o.Conn.Subscribe(forgetSubject("*"), func(m *nats.Msg) {
		pc := strings.TrimPrefix(m.Subject, forgetSubject(""))
		if _, err := Forget(bg, o.DB, pc); err != nil {
			o.Logger.Warn("agents: forget", "pc_id", pc, "err", err)
		}
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("agents: subscribe: %w", err)
	}
	type pcParams struct {
		PCID     string  `json:"pc_id"`
		WaitSecs *int64  `json:"wait_secs"`
		Tail     *int64  `json:"tail"`
		Key      string  `json:"key"`
		Value    string  `json:"value"`
		Entries  []Entry `json:"entries"`
		PCs      string  `json:"pcs"`
	}
	params := func(r api.Request) (pcParams, error) {
		var p pcParams
		err := api.Params(r, &p)
		return p, err
	}
	svc := api.Service{
		Name: Definitions()[0].Service, Description: "the fleet roster: list, detail, versions, metadata, forget, ping, logs",
		Workers: o.Workers, Timeout: max(o.Timeout, LiveTimeout), Logger: o.Logger, Audit: o.Audit,
		Endpoints: Definitions()[0].Bind(map[string]api.Handler{
			"list": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := DecodeList(r)
				if err != nil {
					return nil, err
				}
				p.PageBytes = r.PageBudget()
				page, err := List(ctx, o.DB, s.Meta, p, time.Now())
				if err != nil {
					return nil, err
				}
				for i := range page.Rows {
					page.Rows[i].Groups = s.roster.GroupsOf(page.Rows[i].PCID)
				}
				return page.Fit(r.PageBudget())
			}),
			"versions":  bounded(func(ctx context.Context, r api.Request) (any, error) { return Versions(ctx, o.DB, time.Now()) }),
			"meta_keys": bounded(func(ctx context.Context, r api.Request) (any, error) { return s.Meta.Keys(), nil }),
			"meta_bulk": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				var pcs []string
				for _, pc := range strings.Split(p.PCs, ",") {
					if pc = strings.TrimSpace(pc); pc != "" {
						pcs = append(pcs, pc)
					}
				}
				return s.Meta.Bulk(pcs), nil
			}),
			"detail": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				row, err := Detail(ctx, o.DB, p.PCID, time.Now())
				if err == nil {
					row.Groups = s.roster.GroupsOf(row.PCID)
				}
				return row, err
			}),
			"delete": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				if err := checkPC(p.PCID); err != nil {
					return nil, err
				}
				removed, err := Forget(ctx, o.DB, p.PCID)
				if err != nil {
					return nil, err
				}
				if err := o.Conn.Publish(forgetSubject(p.PCID), nil); err != nil {
					o.Logger.Warn("agents: tell the other nodes to forget", "pc_id", p.PCID, "err", err)
				}
				o.Logger.Info("agent forgotten", "pc_id", p.PCID, "removed", removed, "actor", r.Actor())
				return nil, nil
			}),
			"ping": func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				wait := int64(DefaultPingWait)
				if p.WaitSecs != nil {
					wait = *p.WaitSecs
				}
				return Ping(ctx, o.Conn, p.PCID, wait)
			},
			"logs": func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				return Logs(ctx, o.Conn, p.PCID, p.Tail)
			},
			"meta_get": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				return s.Meta.Read(ctx, p.PCID)
			}),
			"meta_put": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				if err := checkPC(p.PCID); err != nil {
					return nil, err
				}
				return s.Meta.Put(ctx, p.PCID, p.Entries)
			}),
			"meta_set": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				if err := checkPC(p.PCID); err != nil {
					return nil, err
				}
				return s.Meta.SetKey(ctx, p.PCID, p.Key, p.Value)
			}),
			"meta_rm": bounded(func(ctx context.Context, r api.Request) (any, error) {
				p, err := params(r)
				if err != nil {
					return nil, err
				}
				return s.Meta.RemoveKey(ctx, p.PCID, p.Key)
			}),
		}),
	}
	s.running, err = api.Start(o.Conn, svc)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("agents: %w", err)
	}
	return s, nil
}

// Stop stops answering and the metadata watcher.
func (s *Service) Stop() error {
	if s == nil {
		return nil
	}
	var err error
	if s.running != nil {
		err = s.running.Stop()
	}
	if s.forget != nil {
		s.forget.Unsubscribe()
	}
	s.cancel()
	s.wg.Wait()
	if s.ownRoster {
		s.roster.Stop()
	}
	return err
}
