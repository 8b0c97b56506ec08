package gateway

import (
	"fmt"

	"github.com/bedrock-gateway/gateway/pkg/fleet"
)

// sharedSessions is the fleet's shared session store for the session
// cache, sealed with the keys of fleet.session_key_file. The file is read
// once, at start: keys are rotated by a rolling restart (see
// fleet.SessionKeys). A file that cannot be read or parsed stops the
// start; sessions are never shared unencrypted.
func (g *Gateway) sharedSessions() (*fleet.Sessions, error) {
	keys, err := fleet.LoadSessionKeys(g.cfg.Path(g.cfg.Fleet.SessionKeyFile))
	if err != nil {
		return nil, fmt.Errorf("fleet.%w", err)
	}
	s, err := fleet.NewSessions(g.fleet, keys, fleet.SessionsOptions{Registerer: g.reg})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return s, nil
}
