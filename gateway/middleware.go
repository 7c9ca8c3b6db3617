package gateway

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rs/cors"
)

// ContentSecurityPolicy is sent with every response. The dashboard loads
// only its own scripts, styles and API, with no inline code, so it needs
// nothing more; anything injected into a page has nowhere to load from or
// send to.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// recorder remembers the status and size of a response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// accessLog logs one line per request. Health probes log at debug level
// so that a load balancer polling them does not drown the rest.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &recorder{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		if rw.status == 0 {
			rw.status = http.StatusOK
		}
		level := slog.LevelInfo
		if r.URL.Path == "/health" {
			level = slog.LevelDebug
		}
		log.LogAttrs(r.Context(), level, "http",
			slog.String("method", r.Method),
			slog.String("path", logPath(r.URL.Path)),
			slog.Int("status", rw.status),
			slog.Duration("duration", time.Since(start)),
			slog.Int("bytes", rw.bytes),
			slog.String("remote", r.RemoteAddr),
		)
	})
}

// withCORS allows the listed origins to call the API from a browser. With
// none, no CORS headers are sent: the dashboard is same-origin.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowedHeaders: []string{"Authorization", "Content-Type", "X-Kanade-Source"},
		MaxAge:         600,
	}).Handler(next)
}

// isAPI tells whether a path is under /api.
func isAPI(p string) bool { return p == "/api" || strings.HasPrefix(p, "/api/") }

// logPath is a request path as logs keep it: a mailed password-setup
// link's token is a credential for 72 h, so it is left out.
func logPath(p string) string {
	if i := strings.Index(p, "/password-setup/"); i >= 0 {
		return p[:i] + "/password-setup/***"
	}
	return p
}
