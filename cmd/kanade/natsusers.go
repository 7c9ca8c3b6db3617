package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/node"
)

// natsUsers prints a nats-server configuration for `kanade serve
// --nats-config`: the backend's account (a backend user with every right),
// one account per API caller (an operator, --viewers, --operators,
// --admins) and one per agent (user = pc_id), each with a new random
// password (see natsauth).
func natsUsers(args []string) error {
	f := newFlags("nats-users")
	agents := f.String("agents", "", "comma list of pc_ids, one agent user each")
	agentsFile := f.String("agents-file", "", "file with one pc_id a line (# comments allowed)")
	backend := f.String("backend", "backend", `name of the backend user (everything); "" = none`)
	operator := f.String("operator", "operator", `name of a NATS user with the operator tier, as --operators; "" = none`)
	roles := roleFlags(f, operator)
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
	layout, err := natsauth.Fleet(pcs, *backend)
	if err != nil {
		return err
	}
	// The tiered users call the API, each from an account of its own.
	if layout.Callers, err = roles(); err != nil {
		return err
	}
	layout.API = node.Definitions()
	conf, err := natsauth.Render(layout)
	if err != nil {
		return err
	}
	_, err = fmt.Print(conf)
	return err
}
