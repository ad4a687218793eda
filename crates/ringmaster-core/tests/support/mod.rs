//! Helpers shared by the integration tests.

use ringmaster_core::{Call, CallState, Direction, Timestamp, Trigger, TRANSITIONS};
use std::collections::{HashMap, VecDeque};

/// Shortest trigger path from IDLE to `target` for a call of `direction`, if any.
pub fn path_to(direction: Direction, target: CallState) -> Option<Vec<Trigger>> {
    let mut prev: HashMap<CallState, (CallState, Trigger)> = HashMap::new();
    let mut queue = VecDeque::from([CallState::Idle]);
    let mut seen = vec![CallState::Idle];
    while let Some(state) = queue.pop_front() {
        if state == target {
            let mut path = Vec::new();
            let mut at = state;
            while let Some(&(from, trigger)) = prev.get(&at) {
                path.push(trigger);
                at = from;
            }
            path.reverse();
            return Some(path);
        }
        for row in TRANSITIONS
            .iter()
            .filter(|r| r.from == state && r.allows(direction))
        {
            if !seen.contains(&row.to) {
                seen.push(row.to);
                prev.insert(row.to, (state, row.trigger.example()));
                queue.push_back(row.to);
            }
        }
    }
    None
}

/// A call of `direction` driven to `target` through the table, or `None` if unreachable.
#[allow(dead_code)]
pub fn call_in(direction: Direction, target: CallState) -> Option<Call> {
    let path = path_to(direction, target)?;
    let mut call = Call::new(direction, Timestamp::from_millis(1_000));
    for (i, trigger) in path.into_iter().enumerate() {
        call.apply(trigger, Timestamp::from_millis(1_001 + i as u64))
            .expect("path found in the table must apply");
    }
    Some(call)
}
