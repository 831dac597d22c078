// Package bench measures ferry and shows it at work: the logic of
// `ferry bench` and `ferry demo`, kept out of the command so that it can
// be tested.
//
// Relay measures one relay's throughput: how fast it drains a preloaded
// outbox (drain_rate) and what it delivers while writers insert at full
// speed (sustained_rate).
//
// Flood is the north-star scenario of the design (seed 003): an online
// lane at a steady rate and a batch job that floods the same outbox. It
// reports the online lane's latency from commit to delivery before and
// during the flood, and how fast the batch drains, for ferry's relay and,
// in the same run, for a naive baseline: one goroutine polling one FIFO
// over the whole outbox, as the seeds' relay does. On PostgreSQL it also
// times the database's own wake-up, commit to notification on a LISTEN
// connection of its own (system notify): the floor under any relay woken
// by notifications.
//
// Demo plays the same scenario at a small scale on an embedded SQLite
// database and narrates it second by second.
//
// Every run uses a fresh table (ferry_bench_<random> or
// ferry_demo_<random>) and drops it at the end. Results are meant to be
// compared within one run and across runs of the same machine; quote
// medians of several runs. Nothing here asserts a speed.
package bench
