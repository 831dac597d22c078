package config_test

import (
	"fmt"

	"github.com/ferry-dev/ferry/config"
)

func ExampleParse() {
	_, err := config.Parse([]byte(`database:
  url: postgres://ferry:s3cret@db/app
lanes:
  batch: {concurrency: lots, max_attempt: 5}
transports:
  console: {type: stdout}
routes:
  - {topic: "orders.*", to: consle}
`), "relay.yaml")
	fmt.Println(err)
	// Output:
	// relay.yaml:4:24: lanes.batch.concurrency: must be a positive integer, got "lots"
	// relay.yaml:4:30: lanes.batch.max_attempt: unknown key "max_attempt"; did you mean "max_attempts"?
	// relay.yaml:8:29: routes[0].to: transport "consle" is not defined; did you mean "console"?
}

func ExampleConfig_Build() {
	cfg, err := config.Parse([]byte(`database: {url: "sqlite:ferry.db"}
lanes: {online: {weight: 4}, batch: {rate: 100}}
transports: {console: {type: stdout}}
routes: [{topic: "*", to: console}]
`), "relay.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := cfg.Build(nil, nil, nil) // a real program passes the store and os.Stdout
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	opts := b.Options
	for _, l := range opts.Lanes {
		fmt.Printf("lane %s: weight %d, rate %g\n", l.Name, l.Weight, l.Rate)
	}
	fmt.Println(len(opts.Routes), "route")
	// Output:
	// lane online: weight 4, rate 0
	// lane batch: weight 0, rate 100
	// 1 route
}
