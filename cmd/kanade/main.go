// Command kanade is the kanade backend: `kanade serve` runs a node,
// `kanade version` prints the version.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kanade:", err)
		os.Exit(1)
	}
}
