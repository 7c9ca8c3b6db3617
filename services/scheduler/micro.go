package scheduler

import (
	"context"
	"log/slog"

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

// services binds the jobs and schedules capabilities to micro services.
func services(cat *Catalog, eng *Engine, firer *Firer, clock Clock, log *slog.Logger) []api.Service {
	jobs := api.Service{
		Name:        "jobs",
		Description: "the jobs catalog (KV jobs) and running a job now",
		Logger:      log,
		Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.jobs.list", HTTP: "GET /api/jobs",
				Handler: func(ctx context.Context, r api.Request) (any, error) {
					return cat.ListJobsLive(ctx)
				}},
			{Name: "get", Subject: "kanade.jobs.get", HTTP: "GET /api/jobs/{job_id}",
				Handler: with(func(ctx context.Context, p jobParams) (any, error) {
					_, raw, err := cat.GetJob(ctx, p.JobID)
					return raw, err
				})},
			{Name: "put", Subject: "kanade.jobs.put", HTTP: "POST /api/jobs",
				Handler: func(ctx context.Context, r api.Request) (any, error) {
					return cat.PutJob(ctx, r.Data, r.ContentType())
				}},
			{Name: "delete", Subject: "kanade.jobs.delete", HTTP: "DELETE /api/jobs/{job_id}",
				Handler: with(func(ctx context.Context, p jobParams) (any, error) {
					return nil, cat.DeleteJob(ctx, p.JobID)
				})},
			{Name: "exec", Subject: "kanade.jobs.exec", HTTP: "POST /api/exec/{job_id}",
				Handler: with(func(ctx context.Context, req ExecRequest) (any, error) {
					return ExecNow(ctx, cat, firer, req, clock.Now())
				})},
		},
	}
	scheds := api.Service{
		Name:        "schedules",
		Description: "cron schedules of jobs (KV schedules)",
		Logger:      log,
		Endpoints: []api.Endpoint{
			{Name: "list", Subject: "kanade.schedules.list", HTTP: "GET /api/schedules",
				Handler: func(ctx context.Context, r api.Request) (any, error) {
					return cat.ListSchedulesChecked(ctx)
				}},
			{Name: "upcoming", Subject: "kanade.schedules.upcoming", HTTP: "GET /api/schedules/upcoming", IntParams: []string{"limit"},
				Handler: with(func(ctx context.Context, p upcomingParams) (any, error) {
					return eng.Upcoming(ctx, p.Limit)
				})},
			{Name: "get", Subject: "kanade.schedules.get", HTTP: "GET /api/schedules/{id}",
				Handler: with(func(ctx context.Context, p scheduleParams) (any, error) {
					s, err := cat.GetSchedule(ctx, p.ID)
					return s.Raw, err
				})},
			{Name: "put", Subject: "kanade.schedules.put", HTTP: "POST /api/schedules",
				Handler: func(ctx context.Context, r api.Request) (any, error) {
					return cat.PutSchedule(ctx, r.Data, r.ContentType())
				}},
			{Name: "delete", Subject: "kanade.schedules.delete", HTTP: "DELETE /api/schedules/{id}",
				Handler: with(func(ctx context.Context, p scheduleParams) (any, error) {
					return nil, cat.DeleteSchedule(ctx, p.ID)
				})},
			{Name: "enable", Subject: "kanade.schedules.enable", HTTP: "POST /api/schedules/{id}/enable",
				Handler: with(func(ctx context.Context, p scheduleParams) (any, error) {
					return nil, cat.SetEnabled(ctx, p.ID, true)
				})},
			{Name: "disable", Subject: "kanade.schedules.disable", HTTP: "POST /api/schedules/{id}/disable",
				Handler: with(func(ctx context.Context, p scheduleParams) (any, error) {
					return nil, cat.SetEnabled(ctx, p.ID, false)
				})},
			{Name: "preview", Subject: "kanade.schedules.preview", HTTP: "GET /api/schedules/{id}/preview", IntParams: []string{"count"},
				Handler: with(func(ctx context.Context, p previewParams) (any, error) {
					return cat.Preview(ctx, p.ID, p.Count, clock.Now())
				})},
		},
	}
	return []api.Service{jobs, scheds}
}
