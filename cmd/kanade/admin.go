package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osuser "os/user"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/services/accounts"
	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/audit"
)

// admin is `kanade admin reset-password`: set an account's password from
// the host, through the node's NATS, for an admin locked out of the API.
// The account must change it at its next login and is enabled again. The
// change is recorded on the audit trail first (actor "cli:<host user>").
func admin(args []string) error {
	if len(args) == 0 || args[0] != "reset-password" {
		return errors.New("usage: kanade admin reset-password --user NAME [--create] (password on stdin or in KANADE_NEW_PASSWORD)")
	}
	f := newFlags("admin reset-password")
	user := f.String("user", "", "the account whose password to set")
	create := f.Bool("create", false, "create the account, as an admin, if it does not exist")
	natsURL := f.String("nats-url", "nats://127.0.0.1:4222", "the node's NATS")
	creds := f.String("nats-creds", "", "credentials file for --nats-url")
	natsUser := f.String("nats-user", "", "user for --nats-url (the backend user of --nats-config)")
	natsPassword := f.String("nats-password", "", "password for --nats-url")
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	password := os.Getenv("KANADE_NEW_PASSWORD")
	if password == "" {
		fmt.Fprintf(os.Stderr, "new password for %s: ", *user)
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read password: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	opts := []nats.Option{nats.Name("kanade-admin"), nats.Timeout(5 * time.Second)}
	switch {
	case *creds != "":
		opts = append(opts, nats.UserCredentials(*creds))
	case *natsUser != "":
		opts = append(opts, nats.UserInfo(*natsUser, *natsPassword))
	}
	nc, err := nats.Connect(*natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", *natsURL, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := accounts.OpenStore(ctx, js, 1)
	if err != nil {
		return err
	}
	// No change without its record, from the host as through the API: the
	// actor is the host's user.
	rec, err := audit.NewRecorder(ctx, nc, 1)
	if err != nil {
		return fmt.Errorf("audit trail unavailable, nothing was changed: %w", err)
	}
	// The person at the host: under sudo, the one who ran sudo.
	actor := "cli"
	if u := os.Getenv("SUDO_USER"); u != "" {
		actor = "cli:" + u
	} else if u, err := osuser.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	action := "account.update"
	if *create {
		existing, err := st.Get(ctx, *user)
		if err != nil {
			return fmt.Errorf("read account %s: %w", *user, err)
		}
		if existing == nil {
			action = "account.create"
		}
	}
	payload, _ := json.Marshal(map[string]any{"password_reset": true, "sub": actor, "via": "kanade admin reset-password"})
	entry := api.Entry{Actor: actor, Action: action, Target: *user, Payload: payload}
	if err := rec.Record(ctx, entry); err != nil {
		return fmt.Errorf("audit trail unavailable, nothing was changed: %w", err)
	}
	created, err := st.ResetPassword(ctx, *user, password, *create, time.Now())
	if err != nil {
		entry.Error = err.Error()
		if rerr := rec.Record(context.WithoutCancel(ctx), entry); rerr != nil {
			fmt.Fprintf(os.Stderr, "kanade admin: the failure's audit record was not written: %v\n", rerr)
		}
		return fmt.Errorf("reset password of %s: %w", *user, err)
	}
	if created {
		fmt.Fprintf(os.Stderr, "admin %s created; it must change its password at first login\n", *user)
	} else {
		fmt.Fprintf(os.Stderr, "password of %s set; it must change it at next login\n", *user)
	}
	return nil
}
