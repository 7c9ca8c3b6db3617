package results

import (
	"context"
	"time"

	"github.com/kanade-go/kanade/services/api"
)

// testHookHeavy, when set by a test, runs while a heavy list query holds
// its slot, so a test can keep one in flight deterministically.
var testHookHeavy func(ctx context.Context)

// Definitions are the endpoints of this package's two micro services:
// results and executions.
func Definitions() []api.Definition {
	return []api.Definition{
		{Service: "results", Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.results.list", HTTP: "GET /api/results", IntParams: []string{"limit"}, Tier: api.TierViewer},
			{Name: "detail", Subject: "kanade.results.detail", HTTP: "GET /api/results/{result_id}", Tier: api.TierViewer},
			{Name: "tail", Subject: "kanade.results.tail", HTTP: "GET /api/results/{result_id}/tail", Tier: api.TierViewer},
			// Over HTTP the gateway streams the whole output from these pages.
			{Name: "output", Subject: "kanade.results.output", HTTP: "GET /api/results/{result_id}/output/{stream}", Tier: api.TierViewer,
				IntParams: []string{"offset", "limit"}},
		}},
		{Service: "executions", Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.executions.list", HTTP: "GET /api/executions", IntParams: []string{"limit"}, Tier: api.TierViewer},
			{Name: "detail", Subject: "kanade.executions.detail", HTTP: "GET /api/executions/{exec_id}", Tier: api.TierViewer},
			// The rest of kanade.jobs.* belongs to the scheduler's jobs service.
			{Name: "kill", Subject: "kanade.jobs.kill", HTTP: "POST /api/jobs/{job_id}/kill", Tier: api.TierOperator,
				Audit: "kill", AuditTarget: "job_id"},
		}},
	}
}

// definitions binds the plain Go functions of this package to the two
// micro services: results and executions.
func definitions(o Options) []api.Service {
	defs := Definitions()
	// Scanning list queries share a smaller bound than the worker pool, so
	// that however many searches run, workers and read connections stay
	// free for detail, tail and first-page lists.
	heavy := make(chan struct{}, o.HeavyQueries)
	// Every reply must fit the connection's max_payload.
	budget := func() int { return int(o.Conn.MaxPayload()) - replyMargin }
	list := func(ctx context.Context, r api.Request) (any, error) {
		p, err := decodeList(r)
		if err != nil {
			return nil, err
		}
		if p.Heavy() {
			select {
			case heavy <- struct{}{}:
				defer func() { <-heavy }()
			case <-ctx.Done():
				return nil, api.Unavailable("list results: too many searches in flight; narrow `since` or retry")
			}
			if testHookHeavy != nil {
				testHookHeavy(ctx)
			}
		}
		rows, err := List(ctx, o.DB, p)
		if err != nil {
			return nil, err
		}
		return fitList(rows, budget())
	}
	// The three services share the worker pool size, deadline and logger.
	service := func(d api.Definition, description string, handlers map[string]api.Handler) api.Service {
		return api.Service{Name: d.Service, Description: description, Workers: o.Workers, Timeout: o.Timeout, Logger: o.Logger,
			Audit: o.Audit, Endpoints: d.Bind(handlers)}
	}
	byID := func(r api.Request) (string, error) {
		var p struct {
			ResultID string `json:"result_id"`
		}
		err := api.Params(r, &p)
		return p.ResultID, err
	}
	results := service(defs[0], "what ran where: results list with regex filters, detail, live output tail", map[string]api.Handler{
		"list": list,
		"detail": func(ctx context.Context, r api.Request) (any, error) {
			id, err := byID(r)
			if err != nil {
				return nil, err
			}
			row, err := Detail(ctx, o.DB, id)
			if err != nil {
				return nil, err
			}
			return fitDetail(row, budget())
		},
		"tail": func(ctx context.Context, r api.Request) (any, error) {
			id, err := byID(r)
			if err != nil {
				return nil, err
			}
			t, err := Tail(ctx, o.DB, o.Conn, id, o.TailTimeout)
			if t.why != "" {
				o.Logger.Debug("tail: waiting", "result_id", id, "why", t.why)
			}
			if err != nil {
				return nil, err
			}
			return fitTail(t, budget())
		},
		"output": func(ctx context.Context, r api.Request) (any, error) {
			var p OutputParams
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			return Output(ctx, o.DB, p, pageFor(o.Conn.MaxPayload()))
		},
	})
	executions := service(defs[1], "deployments and their counters; kill a job's runs", map[string]api.Handler{
		"list": func(ctx context.Context, r api.Request) (any, error) {
			var p ExecutionParams
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			return ListExecutions(ctx, o.DB, p, time.Now())
		},
		"detail": func(ctx context.Context, r api.Request) (any, error) {
			var p ExecutionDetailParams
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			d, err := ExecutionDetailAfter(ctx, o.DB, p, time.Now())
			if err != nil {
				return nil, err
			}
			return fitExecution(d, budget())
		},
		"kill": func(ctx context.Context, r api.Request) (any, error) {
			var p struct {
				JobID string `json:"job_id"`
			}
			if err := api.Params(r, &p); err != nil {
				return nil, err
			}
			sent, err := Kill(ctx, o.DB, o.Conn, p.JobID, o.Logger)
			if len(sent) > 0 {
				o.Logger.Info("kill published", "job_id", p.JobID, "exec_ids", sent)
			}
			return nil, err
		},
	})
	return []api.Service{results, executions}
}
