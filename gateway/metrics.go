package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kanade-go/kanade/services/health"
)

// metrics is what GET /metrics exports, in the Prometheus text format: this
// gateway's own traffic per route, and at each scrape what the services
// report over NATS (projector lag and rate per stream, agents, recent
// results, executions by status, JetStream usage). A source that does not
// answer leaves its series out and sets kanade_source_up{source} to 0.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(nc *nats.Conn, timeout time.Duration) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_http_requests_total", Help: "API requests answered by this gateway, by route and status code.",
		}, []string{"route", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kanade_http_request_errors_total", Help: "API requests answered with a 5xx status, by route.",
		}, []string{"route"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kanade_http_request_duration_seconds", Help: "Time to answer an API request, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 70},
		}, []string{"route"}),
	}
	m.reg.MustRegister(m.requests, m.errors, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&scrape{nc: nc, timeout: timeout})
	return m
}

// statusWriter records the status code for the route's metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts and times every request of a route.
func (m *metrics) instrument(serve func(http.ResponseWriter, *http.Request, *endpoint)) func(http.ResponseWriter, *http.Request, *endpoint) {
	return func(w http.ResponseWriter, r *http.Request, ep *endpoint) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		serve(sw, r, ep)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := ep.Pattern()
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		if sw.status >= 500 {
			m.errors.WithLabelValues(route).Inc()
		}
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

// handler serves the registry to callers guard lets through (any
// identity: a token, an account, a loopback caller of an open node).
func (m *metrics) handler(guard func(http.Handler) http.Handler) http.Handler {
	return guard(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

// scrape asks the services for their figures at each scrape.
type scrape struct {
	nc      *nats.Conn
	timeout time.Duration
}

var (
	descUp = prometheus.NewDesc("kanade_source_up", "1 when the service behind a group of series answered this scrape.", []string{"source"}, nil)

	descLag      = prometheus.NewDesc("kanade_projector_lag_messages", "Messages of a stream not yet applied to the projection.", []string{"node", "stream"}, nil)
	descRate     = prometheus.NewDesc("kanade_projector_rate_per_second", "Messages applied per second over the last 10 s.", []string{"node", "stream"}, nil)
	descApplied  = prometheus.NewDesc("kanade_projector_last_applied_seq", "The stream sequence last applied.", []string{"node", "stream"}, nil)
	descBehind   = prometheus.NewDesc("kanade_projector_behind_seconds", "Age of the last applied message while more wait.", []string{"node", "stream"}, nil)
	descCaughtUp = prometheus.NewDesc("kanade_projector_caught_up", "1 when the projection is serving (not rebuilding).", []string{"node"}, nil)

	descAgents  = prometheus.NewDesc("kanade_agents", "Agents known, active (heartbeat within 2 min) and stale.", []string{"state"}, nil)
	descResults = prometheus.NewDesc("kanade_recent_results", "Results of the last 24 h: total, failed, running, skipped.", []string{"kind"}, nil)
	descFleet   = prometheus.NewDesc("kanade_fleet_status", "1 for the fleet's current health rollup (ok, unknown, degraded).", []string{"status"}, nil)

	descExecutions = prometheus.NewDesc("kanade_executions", "Executions by the status the API shows.", []string{"status"}, nil)

	descJSExists   = prometheus.NewDesc("kanade_jetstream_exists", "1 when the JetStream resource exists.", []string{"kind", "name"}, nil)
	descJSBytes    = prometheus.NewDesc("kanade_jetstream_bytes", "Bytes stored in the resource's stream.", []string{"kind", "name"}, nil)
	descJSMessages = prometheus.NewDesc("kanade_jetstream_messages", "Messages stored in the resource's stream.", []string{"kind", "name"}, nil)
	descJSMax      = prometheus.NewDesc("kanade_jetstream_max_bytes", "The resource's byte limit (absent when unlimited).", []string{"kind", "name"}, nil)
)

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descLag, descRate, descApplied, descBehind, descCaughtUp,
		descAgents, descResults, descFleet, descExecutions, descJSExists, descJSBytes, descJSMessages, descJSMax} {
		ch <- d
	}
}

// projectorStatus is the part of kanade.projector.status exported.
type projectorStatus struct {
	Node     string `json:"node"`
	CaughtUp bool   `json:"caught_up"`
	Streams  []struct {
		Stream      string  `json:"stream"`
		Lag         uint64  `json:"lag"`
		LastApplied uint64  `json:"last_applied_seq"`
		BehindSecs  float64 `json:"behind_secs"`
		Rate        float64 `json:"rate_per_sec"`
	} `json:"streams"`
}

// ask requests subject and decodes the reply into v; a reply that is an
// error whose body is JSON (health/fleet's 503 when degraded) decodes too.
func (s *scrape) ask(ctx context.Context, subject string, v any) bool {
	m, err := s.nc.RequestWithContext(ctx, subject, []byte("{}"))
	if err != nil {
		return false
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" && code != "503" {
		return false
	}
	return json.Unmarshal(m.Data, v) == nil
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	up := func(source string, ok bool) {
		v := 0.0
		if ok {
			v = 1
		}
		gauge(descUp, v, source)
	}
	var (
		wg   sync.WaitGroup
		proj projectorStatus
		fl   health.Fleet
		ex   map[string]int64
		js   health.JetStreamStatus
		ok   [4]bool
	)
	wg.Add(4)
	go func() { defer wg.Done(); ok[0] = s.ask(ctx, "kanade.projector.status", &proj) }()
	go func() { defer wg.Done(); ok[1] = s.ask(ctx, health.SubjectFleet, &fl) }()
	go func() { defer wg.Done(); ok[2] = s.ask(ctx, health.SubjectExecutions, &ex) }()
	go func() { defer wg.Done(); ok[3] = s.ask(ctx, health.SubjectJetStream, &js) }()
	wg.Wait()

	up("projector", ok[0])
	if ok[0] {
		b := 0.0
		if proj.CaughtUp {
			b = 1
		}
		gauge(descCaughtUp, b, proj.Node)
		for _, st := range proj.Streams {
			gauge(descLag, float64(st.Lag), proj.Node, st.Stream)
			gauge(descRate, st.Rate, proj.Node, st.Stream)
			gauge(descApplied, float64(st.LastApplied), proj.Node, st.Stream)
			gauge(descBehind, st.BehindSecs, proj.Node, st.Stream)
		}
	}
	up("health", ok[1])
	if ok[1] {
		gauge(descAgents, float64(fl.Agents.Known), "known")
		gauge(descAgents, float64(fl.Agents.Active), "active")
		gauge(descAgents, float64(fl.Agents.Stale), "stale")
		r := fl.RecentResults
		gauge(descResults, float64(r.Total), "total")
		gauge(descResults, float64(r.Failed), "failed")
		gauge(descResults, float64(r.Running), "running")
		gauge(descResults, float64(r.Skipped), "skipped")
		for _, st := range []string{health.StatusOK, health.StatusUnknown, health.StatusDegraded} {
			v := 0.0
			if fl.Status == st {
				v = 1
			}
			gauge(descFleet, v, st)
		}
	}
	up("executions", ok[2])
	for status, n := range ex {
		gauge(descExecutions, float64(n), status)
	}
	up("jetstream", ok[3])
	for _, group := range []struct {
		kind   string
		probes []health.Probe
	}{{"stream", js.Streams}, {"kv", js.KVBuckets}, {"object_store", js.ObjectStores}} {
		for _, p := range group.probes {
			e := 0.0
			if p.Exists {
				e = 1
			}
			gauge(descJSExists, e, group.kind, p.Name)
			if p.Bytes != nil {
				gauge(descJSBytes, float64(*p.Bytes), group.kind, p.Name)
			}
			if p.Messages != nil {
				gauge(descJSMessages, float64(*p.Messages), group.kind, p.Name)
			}
			if p.MaxBytes != nil {
				gauge(descJSMax, float64(*p.MaxBytes), group.kind, p.Name)
			}
		}
	}
}
