package plugin

import (
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
)

// DefaultMaxWitnessAge is the default of verify's --max-age.
const DefaultMaxWitnessAge = 24 * time.Hour

// witnesses sets the witness policy of cfg from --witness-policy (or
// NOTARIZE_WITNESS_POLICY), with verify's --max-age; without a policy cfg
// stays as it is.
func (o *rootOptions) witnesses(cfg *ledgerclient.Config) error {
	if o.witnessPolicy == "" {
		return nil
	}
	p, err := ledgerclient.ReadWitnessPolicy(o.witnessPolicy)
	if err != nil {
		return err
	}
	cfg.WitnessPolicy, cfg.MaxWitnessAge = p, o.maxWitnessAge
	return nil
}
