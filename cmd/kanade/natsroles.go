package main

import (
	"strings"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/services/api"
)

// roleFlags declares nats-users' viewer, operator and admin users: NATS
// callers of the kanade.> API with the tiers the gateway enforces on HTTP,
// their subjects taken from the services' endpoint definitions. operator,
// when not "", is one more operator (the --operator flag).
func roleFlags(f *flags, operator *string) func() ([]natsauth.Caller, error) {
	viewers := f.String("viewers", "", "comma list of NATS users with the viewer tier (the API's reads)")
	operators := f.String("operators", "", "comma list of NATS users with the operator tier (reads, exec, kill, jobs, schedules)")
	admins := f.String("admins", "", "comma list of NATS users with the admin tier (all of kanade.>)")
	return func() ([]natsauth.Caller, error) {
		var out []natsauth.Caller
		for _, r := range []struct{ tier, names string }{
			{api.TierViewer, *viewers}, {api.TierOperator, *operator + "," + *operators}, {api.TierAdmin, *admins},
		} {
			var names []string
			for _, n := range strings.Split(r.names, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			users, err := natsauth.RoleUsers(r.tier, names)
			if err != nil {
				return nil, err
			}
			out = append(out, users...)
		}
		return out, nil
	}
}
