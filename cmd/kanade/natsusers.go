package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/kanade-go/kanade/natsauth"
)

// natsUsers prints a nats-server configuration with a user per role for
// `kanade serve --nats-config`: backend, operator, and one agent per pc_id
// with a new random password each.
func natsUsers(args []string) error {
	f := newFlags("nats-users")
	agents := f.String("agents", "", "comma list of pc_ids, one agent user each")
	agentsFile := f.String("agents-file", "", "file with one pc_id a line (# comments allowed)")
	backend := f.String("backend", "backend", `name of the backend user (everything); "" = none`)
	operator := f.String("operator", "operator", `name of the operator user (API, discovery, reading streams); "" = none`)
	roles := roleFlags(f)
	if err := f.parse(args); err != nil {
		return err
	}
	var pcs []string
	for _, pc := range strings.Split(*agents, ",") {
		if pc = strings.TrimSpace(pc); pc != "" {
			pcs = append(pcs, pc)
		}
	}
	if *agentsFile != "" {
		fh, err := os.Open(*agentsFile)
		if err != nil {
			return fmt.Errorf("--agents-file: %w", err)
		}
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if pc := strings.TrimSpace(sc.Text()); pc != "" && !strings.HasPrefix(pc, "#") {
				pcs = append(pcs, pc)
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("--agents-file: %w", err)
		}
	}
	users, err := natsauth.Fleet(pcs, *backend, *operator)
	if err != nil {
		return err
	}
	tiered, err := roles()
	if err != nil {
		return err
	}
	users = append(users, tiered...)
	conf, err := natsauth.Render(users)
	if err != nil {
		return err
	}
	_, err = fmt.Print(conf)
	return err
}
