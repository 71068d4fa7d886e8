//! Queue: where a durable message goes next. Routing moves mail out of `inbound` into
//! the queue of its next hop.

pub mod router;
