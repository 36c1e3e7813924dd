//! The order objects are copied in: every object after those it refers to. An object in
//! a cycle of references cannot be created with its references in place: it is reported
//! (with the cycle), never sent with a reference invented.

use std::collections::{BTreeMap, BTreeSet};

use super::kind::Ref;

/// `nodes` in an order where each comes after its `edges` (those among `nodes`), and the
/// nodes on a cycle, each with the cycle it is on.
pub fn order(nodes: &[Ref], edges: &BTreeMap<Ref, Vec<Ref>>) -> (Vec<Ref>, BTreeMap<Ref, Vec<Ref>>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let known: BTreeSet<&Ref> = nodes.iter().collect();
    let mut marks: BTreeMap<Ref, Mark> = BTreeMap::new();
    let mut out = Vec::new();
    let mut cycles: BTreeMap<Ref, Vec<Ref>> = BTreeMap::new();
    for start in nodes {
        if marks.contains_key(start) {
            continue;
        }
        // An explicit stack: (node, its next edge to look at).
        let mut stack: Vec<(Ref, usize)> = vec![(start.clone(), 0)];
        marks.insert(start.clone(), Mark::Visiting);
        while let Some((node, next)) = stack.last().cloned() {
            let targets: Vec<&Ref> =
                edges.get(&node).map(|t| t.iter().filter(|t| known.contains(t)).collect()).unwrap_or_default();
            if let Some(target) = targets.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks.get(*target) {
                    None => {
                        marks.insert((*target).clone(), Mark::Visiting);
                        stack.push(((*target).clone(), 0));
                    }
                    Some(Mark::Visiting) => {
                        let from = stack.iter().position(|(n, _)| n == *target).unwrap_or(0);
                        let mut cycle: Vec<Ref> = stack[from..].iter().map(|(n, _)| n.clone()).collect();
                        cycle.push((*target).clone());
                        for (member, _) in &stack[from..] {
                            cycles.entry(member.clone()).or_insert_with(|| cycle.clone());
                        }
                    }
                    Some(Mark::Done) => {}
                }
            } else {
                marks.insert(node.clone(), Mark::Done);
                out.push(node);
                stack.pop();
            }
        }
    }
    out.retain(|node| !cycles.contains_key(node));
    (out, cycles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str) -> Ref {
        Ref { kind: "cohorts", id: id.into() }
    }

    #[test]
    fn references_come_first_and_cycles_are_named() {
        let nodes = vec![r("1"), r("2"), r("3"), r("4"), r("5")];
        let edges = BTreeMap::from([
            (r("1"), vec![r("2")]),
            (r("2"), vec![r("3"), r("9")]),
            (r("4"), vec![r("5")]),
            (r("5"), vec![r("4")]),
        ]);
        let (ordered, cycles) = order(&nodes, &edges);
        assert_eq!(ordered, vec![r("3"), r("2"), r("1")]);
        assert_eq!(cycles.keys().cloned().collect::<Vec<_>>(), vec![r("4"), r("5")]);
        assert_eq!(cycles[&r("4")], vec![r("4"), r("5"), r("4")]);
    }
}
