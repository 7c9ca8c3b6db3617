package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/kanade-go/kanade/services/api"
)

// params decodes the request's parameters into v: the JSON object body
// and the api.ParamHeaderPrefix<name> headers the gateway sends beside a
// body it passes through (a manifest, an exec target), the headers winning.
func params(r api.Request, v any) error { return api.Params(r, v) }

// with adapts fn to a handler that first decodes the request's parameters
// into P, so each endpoint states only what it does with them.
func with[P any](fn func(ctx context.Context, p P) (any, error)) api.Handler {
	return func(ctx context.Context, r api.Request) (any, error) {
		var p P
		if err := params(r, &p); err != nil {
			return nil, err
		}
		return fn(ctx, p)
	}
}

type jobParams struct {
	JobID string `json:"job_id"`
}

type scheduleParams struct {
	ID string `json:"id"`
}

type upcomingParams struct {
	Limit int `json:"limit"`
}

type previewParams struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

type coverageParams struct {
	ID     string `json:"id"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
}

// flag is a boolean query parameter: the gateway sends "true", a NATS
// caller may send true.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*f = flag(x)
	case string:
		p, err := strconv.ParseBool(x)
		if err != nil && x != "" {
			return fmt.Errorf("want true or false, not %q", x)
		}
		*f = flag(p)
	case nil:
	default:
		return fmt.Errorf("want true or false")
	}
	return nil
}

type disableParams struct {
	ID          string `json:"id"`
	Cascade     flag   `json:"cascade"`
	CascadeKill flag   `json:"cascade_kill"`
}

// Definitions are the endpoints of the jobs and schedules services.
func Definitions() []api.Definition {
	return []api.Definition{
		{Service: "jobs", Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.jobs.list", HTTP: "GET /api/jobs", Tier: api.TierViewer},
			{Name: "get", Subject: "kanade.jobs.get", HTTP: "GET /api/jobs/{job_id}", Tier: api.TierViewer},
			{Name: "yaml", Subject: "kanade.jobs.yaml", HTTP: "GET /api/jobs/{job_id}/yaml", Tier: api.TierViewer},
			{Name: "put", Subject: "kanade.jobs.put", HTTP: "POST /api/jobs", Tier: api.TierOperator,
				Audit: "job_upsert", AuditTarget: "id"},
			{Name: "delete", Subject: "kanade.jobs.delete", HTTP: "DELETE /api/jobs/{job_id}", Tier: api.TierOperator,
				Audit: "job_delete", AuditTarget: "job_id"},
			{Name: "exec", Subject: "kanade.jobs.exec", HTTP: "POST /api/exec/{job_id}", Tier: api.TierOperator,
				Audit: "exec", AuditTarget: "job_id"},
		}},
		{Service: "schedules", Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.schedules.list", HTTP: "GET /api/schedules", Tier: api.TierViewer, Paged: true},
			{Name: "upcoming", Subject: "kanade.schedules.upcoming", HTTP: "GET /api/schedules/upcoming", IntParams: []string{"limit"}, Tier: api.TierViewer},
			{Name: "coverage_summary", Subject: "kanade.schedules.coverage_summary", HTTP: "GET /api/schedules/coverage", Tier: api.TierViewer},
			{Name: "get", Subject: "kanade.schedules.get", HTTP: "GET /api/schedules/{id}", Tier: api.TierViewer},
			{Name: "put", Subject: "kanade.schedules.put", HTTP: "POST /api/schedules", Tier: api.TierOperator,
				Audit: "schedule_upsert", AuditTarget: "id"},
			{Name: "delete", Subject: "kanade.schedules.delete", HTTP: "DELETE /api/schedules/{id}", Tier: api.TierOperator,
				Audit: "schedule_delete", AuditTarget: "id"},
			{Name: "enable", Subject: "kanade.schedules.enable", HTTP: "POST /api/schedules/{id}/enable", Tier: api.TierOperator,
				Audit: "schedule_enable", AuditTarget: "id"},
			{Name: "disable", Subject: "kanade.schedules.disable", HTTP: "POST /api/schedules/{id}/disable", Tier: api.TierOperator,
				Audit: "schedule_disable", AuditTarget: "id"},
			{Name: "preview", Subject: "kanade.schedules.preview", HTTP: "GET /api/schedules/{id}/preview", IntParams: []string{"count"}, Tier: api.TierViewer},
			{Name: "yaml", Subject: "kanade.schedules.yaml", HTTP: "GET /api/schedules/{id}/yaml", Tier: api.TierViewer},
			{Name: "status", Subject: "kanade.schedules.status", HTTP: "GET /api/schedules/{id}/status", Tier: api.TierViewer},
			{Name: "coverage", Subject: "kanade.schedules.coverage", HTTP: "GET /api/schedules/{id}/coverage", IntParams: []string{"offset", "limit"}, Tier: api.TierViewer},
			{Name: "schema", Subject: "kanade.schedules.schema", HTTP: "GET /api/schemas/schedule.json", Tier: api.TierViewer},
			{Name: "freeze_get", Subject: "kanade.freeze.get", HTTP: "GET /api/freeze", Tier: api.TierViewer},
			{Name: "freeze_put", Subject: "kanade.freeze.put", HTTP: "PUT /api/freeze", Tier: api.TierOperator,
				Audit: "freeze_set"},
			{Name: "freeze_delete", Subject: "kanade.freeze.delete", HTTP: "DELETE /api/freeze", Tier: api.TierOperator,
				Audit: "freeze_clear"},
		}},
	}
}

// services binds the jobs, schedules and freeze capabilities to micro
// services.
func services(cat *Catalog, eng *Engine, firer *Firer, clock Clock, log *slog.Logger, aud api.Auditor) []api.Service {
	defs := Definitions()
	jobs := api.Service{
		Name:        defs[0].Service,
		Description: "the jobs catalog (KV jobs) and running a job now",
		Logger:      log,
		Audit:       aud,
		Endpoints: defs[0].Bind(map[string]api.Handler{
			"list": func(ctx context.Context, r api.Request) (any, error) {
				return cat.ListJobsLive(ctx)
			},
			"get": with(func(ctx context.Context, p jobParams) (any, error) {
				_, raw, err := cat.GetJob(ctx, p.JobID)
				return raw, err
			}),
			"yaml": with(func(ctx context.Context, p jobParams) (any, error) {
				return cat.JobYAML(ctx, p.JobID)
			}),
			"put": func(ctx context.Context, r api.Request) (any, error) {
				return cat.PutJob(ctx, r.Data, r.ContentType())
			},
			"delete": with(func(ctx context.Context, p jobParams) (any, error) {
				return nil, cat.DeleteJob(ctx, p.JobID)
			}),
			"exec": func(ctx context.Context, r api.Request) (any, error) {
				var req ExecRequest
				if err := params(r, &req); err != nil {
					return nil, err
				}
				req.InitiatedBy = api.CallerActor(r)
				return ExecNow(ctx, cat, firer, req, clock.Now())
			},
		}),
	}
	scheds := api.Service{
		Name:        defs[1].Service,
		Description: "schedules of jobs (KV schedules) in upstream's when model, and the fleet freeze",
		Logger:      log,
		Audit:       aud,
		Endpoints: defs[1].Bind(map[string]api.Handler{
			"list": func(ctx context.Context, r api.Request) (any, error) {
				return schedulesPage(ctx, cat, r)
			},
			"upcoming": with(func(ctx context.Context, p upcomingParams) (any, error) {
				return eng.Upcoming(ctx, p.Limit)
			}),
			"coverage_summary": func(ctx context.Context, r api.Request) (any, error) {
				return cat.CoverageSummary(ctx, clock.Now())
			},
			"get": with(func(ctx context.Context, p scheduleParams) (any, error) {
				s, err := cat.GetSchedule(ctx, p.ID)
				return s.Raw, err
			}),
			"put": func(ctx context.Context, r api.Request) (any, error) {
				return cat.PutSchedule(ctx, r.Data, r.ContentType())
			},
			"delete": with(func(ctx context.Context, p scheduleParams) (any, error) {
				return nil, cat.DeleteSchedule(ctx, p.ID)
			}),
			"enable": with(func(ctx context.Context, p scheduleParams) (any, error) {
				return nil, cat.SetEnabled(ctx, p.ID, true)
			}),
			"disable": with(func(ctx context.Context, p disableParams) (any, error) {
				_, err := cat.Disable(ctx, p.ID, bool(p.Cascade), bool(p.CascadeKill))
				return nil, err
			}),
			"preview": with(func(ctx context.Context, p previewParams) (any, error) {
				return cat.Preview(ctx, p.ID, p.Count, clock.Now())
			}),
			"yaml": with(func(ctx context.Context, p scheduleParams) (any, error) {
				return cat.ScheduleYAML(ctx, p.ID)
			}),
			"status": with(func(ctx context.Context, p scheduleParams) (any, error) {
				return cat.Status(ctx, p.ID, clock.Now())
			}),
			"coverage": with(func(ctx context.Context, p coverageParams) (any, error) {
				return cat.Coverage(ctx, p.ID, p.Offset, p.Limit)
			}),
			"schema": func(ctx context.Context, r api.Request) (any, error) {
				return json.RawMessage(scheduleSchema), nil
			},
			"freeze_get": func(ctx context.Context, r api.Request) (any, error) {
				return GetFreeze(ctx, cat.FleetConfig)
			},
			"freeze_put": func(ctx context.Context, r api.Request) (any, error) {
				return PutFreeze(ctx, cat.FleetConfig, r.Data)
			},
			"freeze_delete": func(ctx context.Context, r api.Request) (any, error) {
				return nil, DeleteFreeze(ctx, cat.FleetConfig)
			},
		}),
	}
	return []api.Service{jobs, scheds}
}

// schedulesPage is one page of the schedules list, by id, after the
// request's api.ParamAfter id: a bucket of many or large schedules is
// answered in pages that each fit max_payload (the gateway joins them into
// upstream's one array for HTTP).
func schedulesPage(ctx context.Context, cat *Catalog, r api.Request) (any, error) {
	var p struct {
		After string `json:"after"`
	}
	if err := params(r, &p); err != nil {
		return nil, err
	}
	list, err := cat.ListSchedulesChecked(ctx, p.After)
	if err != nil {
		return nil, err
	}
	return api.FitPage(list, false, r.PageBudget(), func(s CheckedSchedule) string { return s.Key }, nil)
}
