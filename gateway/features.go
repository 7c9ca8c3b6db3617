package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Page features, as upstream gates them (a pure function of the caller's
// allow-list and the matched route). An unrestricted caller (no list: the
// service token, an account without features) passes everywhere.

// restrictedCommons are open to every restricted account.
var restrictedCommons = routeSet("/api/version", "/api/command-signing", "/api/auth/me", "/api/auth/change-password",
	"/api/auth/mfa/init", "/api/auth/mfa/verify", "/api/auth/mfa/disable")

// sharedOwners widen a read route to the holders of any of these features.
var sharedOwners = map[string][]string{
	"/api/agents":           {"run", "exec", "inventory", "activity", "events", "logs", "analytics", "notifications", "rollout", "config"},
	"/api/agents/meta-keys": {"inventory", "activity", "events", "compliance", "collect"},
	"/api/agents/meta":      {"inventory", "activity", "events", "compliance", "collect"},
	"/api/groups":           {"groups", "config", "exec", "rollout"},
	"/api/jobs":             {"jobs", "exec"},
}

// routeFeature is upstream's feature_for_path, by route pattern; path
// parameters match whatever their names ({id} and {job_id} alike).
var routeFeature = func() map[string]string {
	m := map[string]string{}
	add := func(f string, paths ...string) {
		for _, p := range paths {
			m[normPattern(p)] = f
		}
	}
	add("inventory", "/api/inventory/jobs", "/api/inventory/by-job/{id}", "/api/inventory/{id}/search/{f}",
		"/api/inventory/{id}/search-scalars", "/api/inventory/{id}/history/pc/{pc}", "/api/inventory/{id}/history/search",
		"/api/inventory/{id}/history/first_seen", "/api/inventory/{pc}")
	add("compliance", "/api/checks", "/api/checks/{name}")
	add("analytics", "/api/analytics")
	add("activity", "/api/results", "/api/results/{id}", "/api/results/{id}/tail", "/api/executions", "/api/executions/{id}")
	add("events", "/api/obs_events", "/api/obs_events/kinds", "/api/obs_events/lane_seeds", "/api/obs_events/sources")
	add("audit", "/api/audit", "/api/audit/verify")
	add("remote", "/api/remote/{pc}/ws")
	add("logs", "/api/agents/{pc}/logs")
	add("collect", "/api/collect/bundles", "/api/collect/bundles/{key}")
	add("jobs", "/api/jobs", "/api/jobs/{id}/yaml", "/api/jobs/{id}", "/api/jobs/{id}/kill", "/api/scripts/status",
		"/api/scripts/{id}/revoke", "/api/scripts/{id}/unrevoke")
	add("schedules", "/api/schedules", "/api/schedules/coverage", "/api/schedules/{id}/yaml", "/api/schedules/{id}/preview",
		"/api/schedules/{id}/status", "/api/schedules/{id}/coverage", "/api/schedules/{id}", "/api/schedules/{id}/disable",
		"/api/schedules/{id}/enable")
	add("views", "/api/views", "/api/views/{id}/yaml", "/api/views/{id}")
	add("groups", "/api/group-defs", "/api/group-defs/{id}/yaml", "/api/group-defs/{id}/members", "/api/group-defs/{id}",
		"/api/groups", "/api/groups/{name}/email")
	add("notifications", "/api/notifications", "/api/notifications/{id}", "/api/notifications/{id}/ack_status",
		"/api/notifications/{id}/recall")
	add("rollout", "/api/agents/releases", "/api/agents/releases/{v}", "/api/agents/rollout", "/api/agents/publish")
	add("agent-install", "/api/agents/installer", "/api/agents/installer.ps1", "/api/agents/installer.sh")
	add("apps", "/api/app-packages", "/api/app-packages/{name}/{version}", "/api/script-objects", "/api/script-objects/{name}/{version}")
	add("config", "/api/agents/{pc}/effective_config", "/api/config", "/api/config/defaults", "/api/groups/{name}/config",
		"/api/groups/{name}/config/inherited", "/api/pcs/{pc}/config", "/api/pcs/{pc}/config/inherited")
	add("jetstream", "/api/jetstream/status")
	add("run", "/api/run")
	add("exec", "/api/exec/{id}")
	add("settings", "/api/server-settings", "/api/server-settings/defaults", "/api/server-settings/support-codes/{scope}",
		"/api/server/restart")
	add("accounts", "/api/accounts", "/api/accounts/{u}", "/api/accounts/{u}/reset-link", "/api/permission-groups",
		"/api/permission-groups/{name}", "/api/query")
	return m
}()

func routeSet(paths ...string) map[string]bool {
	m := map[string]bool{}
	for _, p := range paths {
		m[normPattern(p)] = true
	}
	return m
}

// normPattern writes every path parameter as {}.
func normPattern(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

// featureAllowed decides a restricted caller's access to a route: "" when
// it may go on, else upstream's 403 text.
func featureAllowed(route Route, method string, features *[]string) string {
	if features == nil {
		return ""
	}
	p := normPattern(route.Path)
	if restrictedCommons[p] {
		return ""
	}
	held := func(f string) bool { return slices.Contains(*features, f) }
	if owners, ok := sharedOwners[p]; ok && (method == http.MethodGet || method == http.MethodHead) && slices.ContainsFunc(owners, held) {
		return ""
	}
	if f, ok := routeFeature[p]; ok {
		if held(f) {
			return ""
		}
		return fmt.Sprintf("account not permitted to access this page (requires %s)", f)
	}
	return "account not permitted to access this route"
}
