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
	publicURL := f.String("public-url", "", "the dashboard's address as users reach it (https://kanade.example.com): the start of mailed password setup and reset links")
	relay := f.String("mail-relay", "", "SMTP relay host:port that mails password setup and reset links (STARTTLS whenever offered); empty: no mail")
	from := f.String("mail-from", "", "sender address of those mails")
	mailUser := f.String("mail-username", "", "SMTP AUTH PLAIN user (optional; only over TLS or to a loopback relay)")
	mailPassword := f.String("mail-password", "", "SMTP AUTH password; prefer the env var")
	return func(o *node.Options) {
		o.Accounts.PublicURL = *publicURL
		if *relay != "" {
			o.Accounts.Mail = &accounts.Mail{Addr: *relay, From: *from, Username: *mailUser, Password: *mailPassword}
		}
		o.Accounts.BootstrapUser = *user
		o.Accounts.BootstrapPassword = *password
		o.Accounts.JWTSecret = *secret
		o.Accounts.SessionTTL = *ttl
	}
}
