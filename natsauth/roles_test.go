package natsauth

import (
	"slices"
	"testing"

	"github.com/kanade-go/kanade/services/api"
)

func TestRolesFollowTheDefinitions(t *testing.T) {
	defs := []api.Definition{{Service: "x", Endpoints: []api.Endpoint{
		{Name: "list", Subject: "kanade.results.list", Tier: api.TierViewer},
		{Name: "login", Subject: "kanade.auth.login", Tier: api.TierPublic},
		{Name: "exec", Subject: "kanade.jobs.exec", Tier: api.TierOperator},
		{Name: "accounts", Subject: "kanade.accounts.list", Tier: api.TierAdmin},
		{Name: "odd", Subject: "kanade.odd", Tier: "superuser"},
		{Name: "mfa", Subject: "kanade.auth.mfa_verify", Tier: api.TierViewer},
	}}}
	allows := func(tier, subject string) bool {
		p, err := Role(tier, defs)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(p.PublishAllow, subject)
	}
	cases := []struct {
		tier, subject string
		want          bool
	}{
		{"viewer", "kanade.results.list", true},
		{"viewer", "kanade.auth.login", true},
		{"viewer", "kanade.jobs.exec", false},
		{"operator", "kanade.jobs.exec", true},
		{"operator", "kanade.accounts.list", false},
		{"operator", "kanade.odd", false}, // an unknown tier is no one's
		{"admin", "kanade.accounts.list", true},
		{"admin", "kanade.agents.forgotten.PC1", false}, // not an endpoint
		{"admin", "kanade.auth.mfa_verify", false},
		{"operator", "kanade.auth.mfa_verify", false}, // acts on the account the gateway names
	}
	for _, c := range cases {
		if got := allows(c.tier, c.subject); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.tier, c.subject, got, c.want)
		}
	}
	if _, err := Role("public", defs); err == nil {
		t.Error("a public NATS role")
	}
	p, _ := Role("viewer", defs)
	if !slices.Contains(p.PublishDeny, "commands.>") || !slices.Equal(p.SubscribeAllow, []string{"_INBOX.>", RoleInboxPrefix + ".>"}) {
		t.Errorf("viewer: %+v", p)
	}
}
