// Package ferry is a transactional outbox: a service writes messages in
// the same database transaction as its business data (Outbox.Write), so a
// message exists if and only if the transaction commits, and a relay
// (package relay) delivers them to their destinations, in order per key,
// at least once, without losing any.
//
// The outbox lives in one table of the service's own database: SQLite
// (store/sqlite, the embedded default), PostgreSQL (store/postgres) or
// MariaDB/MySQL (store/mysql). All three implement Store and pass the
// conformance suite in store/storetest. Services in other languages
// insert rows into the same table with plain SQL; the README documents the
// columns.
//
// A Message has a lane (its class of traffic: each lane gets its own share
// of the relay, so a batch flood does not delay online messages), a topic
// (routed to a Destination), an optional key (messages with the same key
// are delivered one at a time in commit order), a type, headers, a payload
// and an optional earliest delivery time. Once stored it is a Record, with
// its status: WAITING, DONE, FAILED (retry budget spent; a person retries
// or excludes it) or EXCLUDED.
package ferry
