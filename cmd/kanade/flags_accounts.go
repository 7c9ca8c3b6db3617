package main

import (
	"github.com/kanade-go/kanade/node"
	"github.com/kanade-go/kanade/services/accounts"
)

// accountsFlags declares the accounts flags of serve. The bootstrap admin
// and the JWT secret are meant for the environment (upstream's names):
// KANADE_BOOTSTRAP_ADMIN_USER, KANADE_BOOTSTRAP_ADMIN_PASSWORD,
// KANADE_JWT_SECRET.
func accountsFlags(f *flags) func(*node.Options) {
	user := f.String("bootstrap-admin-user", "admin", "name of the admin seeded on a first start (when no account exists)")
	password := f.String("bootstrap-admin-password", "", "password of that admin, who must change it at first login; prefer the env var")
	secret := f.String("jwt-secret", "", "HMAC secret of login tokens; default: one the nodes generate and share in the accounts KV bucket")
	ttl := f.Duration("session-ttl", accounts.DefaultSessionTTL, "lifetime of a login token (1h .. 8760h)")
	return func(o *node.Options) {
		o.Accounts.BootstrapUser = *user
		o.Accounts.BootstrapPassword = *password
		o.Accounts.JWTSecret = *secret
		o.Accounts.SessionTTL = *ttl
	}
}
