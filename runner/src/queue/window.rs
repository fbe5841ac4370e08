//! The flow-control window: how many deliveries a runner may hold, and which language queues hold
//! them (docs/queue.md, "Flow control"). Pure decisions; `session` carries them out.
//!
//! The window is the judge's capacity plus `prefetch` headroom. It is made of *units*: one
//! consumer each, with a prefetch of 1 (`basic.qos` per consumer), so a unit holds at most one
//! unacknowledged delivery and the runner never holds more than it has units. (Quorum queues
//! do not support a channel-wide prefetch shared by several consumers, and a consumer's prefetch
//! cannot change once it consumes; units make the window exact over any number of queues.)
//!
//! Units start spread over the served languages. A unit only ever moves while it is idle (it
//! holds no delivery), and its replacement starts only after the old consumer is gone, so the
//! bound holds while units move. A language whose queue has ready messages but no idle unit
//! gets idle units from languages that have them (whose queues are therefore empty).
//!
//! Owns: the window's size, the first placement of units, when to look at queue depths, and
//! which idle units move where. Must not: talk to the broker.

use std::collections::BTreeMap;

/// The most deliveries held at once: `capacity + prefetch`, at least 1.
pub fn size(capacity: usize, prefetch: usize) -> usize {
    (capacity + prefetch).max(1)
}

/// The language of each unit at start: round robin over `languages` (in their order).
pub fn initial(languages: &[String], size: usize) -> Vec<String> {
    if languages.is_empty() {
        return Vec::new();
    }
    (0..size)
        .map(|i| languages[i % languages.len()].clone())
        .collect()
}

/// A unit as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitView {
    pub language: String,
    /// Holds no delivery and is not being moved.
    pub idle: bool,
}

/// Idle units per served language (0 for a language without any).
fn idle_by_language(languages: &[String], units: &[UnitView]) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = languages.iter().map(|l| (l.clone(), 0)).collect();
    for u in units.iter().filter(|u| u.idle) {
        if let Some(n) = m.get_mut(&u.language) {
            *n += 1;
        }
    }
    m
}

/// The languages whose queue depth is worth asking for: those without an idle unit, when some
/// other language has one to give. Empty: nothing could move, so nothing is asked.
pub fn to_poll(languages: &[String], units: &[UnitView]) -> Vec<String> {
    let idle = idle_by_language(languages, units);
    if idle.values().all(|&n| n == 0) {
        return Vec::new();
    }
    idle.into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(l, _)| l)
        .collect()
}

/// One idle unit of `from` moves to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: String,
    pub to: String,
}

/// Which idle units move, given the ready messages of the polled languages. A language with
/// ready messages and no idle unit gets up to that many idle units, taken first from languages
/// with two or more idle units (they keep one), then from languages with one; busiest needs first.
pub fn rebalance(languages: &[String], units: &[UnitView], ready: &[(String, u64)]) -> Vec<Move> {
    let mut idle = idle_by_language(languages, units);
    let mut needy: Vec<(String, u64)> = ready
        .iter()
        .filter(|(l, n)| *n > 0 && idle.get(l) == Some(&0))
        .cloned()
        .collect();
    needy.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut moves = Vec::new();
    for keep in [1, 0] {
        for (to, want) in &mut needy {
            while *want > 0 {
                // The donor with the most idle units beyond `keep` (ties: by name).
                let donor = idle
                    .iter()
                    .filter(|(l, n)| *l != to && **n > keep)
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                    .map(|(l, _)| l.clone());
                let Some(from) = donor else { break };
                if let Some(n) = idle.get_mut(&from) {
                    *n -= 1;
                }
                moves.push(Move {
                    from,
                    to: to.clone(),
                });
                *want -= 1;
            }
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The window's size, placement and moves; the bound never
    //! grows with moves.
    use super::*;

    fn langs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn unit(l: &str, idle: bool) -> UnitView {
        UnitView {
            language: l.into(),
            idle,
        }
    }

    #[test]
    fn test_size_and_initial_placement() {
        assert_eq!(size(0, 0), 1);
        assert_eq!(size(4, 2), 6);
        let l = langs(&["c", "java", "python3"]);
        assert_eq!(initial(&l, 4), langs(&["c", "java", "python3", "c"]));
        assert_eq!(initial(&l, 2), langs(&["c", "java"]));
        assert!(initial(&[], 3).is_empty());
    }

    #[test]
    fn test_poll_only_when_a_move_is_possible() {
        let l = langs(&["c", "java", "python3"]);
        // Every language has an idle unit: a message anywhere is taken at once.
        let all = [unit("c", true), unit("java", true), unit("python3", true)];
        assert!(to_poll(&l, &all).is_empty());
        // python3 has no unit, c has an idle one: ask for python3's depth (and java's, busy).
        let some = [unit("c", true), unit("java", false)];
        assert_eq!(to_poll(&l, &some), langs(&["java", "python3"]));
        // Nothing idle: nothing could move.
        let busy = [unit("c", false), unit("java", false)];
        assert!(to_poll(&l, &busy).is_empty());
    }

    #[test]
    fn test_moves_go_to_ready_queues_from_idle_ones() {
        let l = langs(&["c", "cpp", "java", "python3"]);
        let units = [
            unit("c", true),
            unit("c", true),
            unit("c", true),
            unit("cpp", true),
            unit("java", false),
        ];
        // python3 has 2 ready, java 5 ready (its only unit busy): java first.
        let moves = rebalance(
            &l,
            &units,
            &[("java".into(), 5), ("python3".into(), 2), ("cpp".into(), 0)],
        );
        // Donors keep one idle unit in the first pass: c gives 2; then c and cpp give their last.
        assert_eq!(
            moves,
            vec![
                Move {
                    from: "c".into(),
                    to: "java".into()
                },
                Move {
                    from: "c".into(),
                    to: "java".into()
                },
                Move {
                    from: "c".into(),
                    to: "java".into()
                },
                Move {
                    from: "cpp".into(),
                    to: "java".into()
                },
            ]
        );
        // Never more moves than idle units, whatever the depths say.
        let idle = units.iter().filter(|u| u.idle).count();
        assert!(moves.len() <= idle);
        // A language that has an idle unit is not needy even if the poll raced with a delivery.
        assert!(rebalance(&l, &units, &[("c".into(), 9)]).is_empty());
        // Unknown languages in the answer are ignored.
        assert!(rebalance(&l, &units, &[("cobol".into(), 9)]).is_empty());
    }

    #[test]
    fn test_moves_keep_the_unit_count() {
        // Apply the moves and check the window is unchanged and every move took an idle unit.
        let l = langs(&["a", "b", "c"]);
        let mut units: Vec<UnitView> = initial(&l, 5).iter().map(|x| unit(x, true)).collect();
        units[0].idle = false;
        let moves = rebalance(&l, &units, &[("b".into(), 3), ("c".into(), 1)]);
        // b and c already have idle units: nothing to do.
        assert!(moves.is_empty());
        units.retain(|u| u.language != "b" && u.language != "c");
        units.push(unit("b", false));
        let moves = rebalance(&l, &units, &[("b".into(), 3), ("c".into(), 1)]);
        for m in &moves {
            let i = units
                .iter()
                .position(|u| u.idle && u.language == m.from)
                .expect("an idle donor");
            units[i].language = m.to.clone();
        }
        assert_eq!(units.len(), 3);
        assert!(!moves.is_empty());
    }
}
