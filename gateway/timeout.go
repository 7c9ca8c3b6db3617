package gateway

import (
	"fmt"
	"time"
)

// maxRouteTimeout bounds what a service may ask the gateway to wait.
const maxRouteTimeout = 2 * time.Hour

// routeTimeout reads an endpoint's api.MetaTimeout ("" = the default).
func routeTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxRouteTimeout {
		return 0, fmt.Errorf("route timeout %q: want a duration up to %s", s, maxRouteTimeout)
	}
	return d, nil
}
