//! `[classes]`: named budgets, which the access zone and the allowlists refer to.

use std::collections::BTreeMap;

use sipguard_common::abi::CLASS_NAME_LEN;
use toml::Spanned;

use super::{ParseContext, doc::BudgetDoc};
use crate::policy::{Budget, MAX_CLASSES};

impl ParseContext<'_> {
    /// `[classes]`: each name must fit the kernel's class table and each budget must be usable.
    pub(super) fn read_classes(&mut self, classes: &BTreeMap<String, Spanned<BudgetDoc>>) {
        for (name, budget) in classes {
            if !is_valid_class_name(name) {
                self.report_at(
                    budget.span(),
                    format!(
                        "class name '{name}': use up to {} letters, digits, '-' or '_'",
                        CLASS_NAME_LEN - 1
                    ),
                );
            }
            if let Some(checked) = self.read_budget(&format!("class {name}"), budget) {
                self.classes.insert(name.clone(), checked);
            }
        }
    }

    /// Reports a reference to a class `[classes]` does not define; `true` when it is defined.
    pub(super) fn check_class_is_defined(&mut self, class: &Spanned<String>) -> bool {
        let defined = self.classes.contains_key(class.get_ref());
        if !defined {
            self.report_at(
                class.span(),
                format!("no class named '{}' in [classes]", class.get_ref()),
            );
        }
        defined
    }

    /// Counted after the zones, which may have added the built-in access class.
    pub(super) fn check_class_count(&mut self) {
        if self.classes.len() > MAX_CLASSES {
            let message = format!(
                "{} classes; the filter holds at most {MAX_CLASSES}",
                self.classes.len()
            );
            self.report(0, message);
        }
    }

    /// A checked budget, or `None` after reporting why `label` cannot be used.
    pub(super) fn read_budget(
        &mut self,
        label: &str,
        budget: &Spanned<BudgetDoc>,
    ) -> Option<Budget> {
        match check_budget(budget.get_ref()) {
            Ok(checked) => Some(checked),
            Err(message) => {
                self.report_at(budget.span(), format!("{label}: {message}"));
                None
            }
        }
    }
}

fn is_valid_class_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < CLASS_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_budget(doc: &BudgetDoc) -> Result<Budget, String> {
    let burst = doc.burst.unwrap_or(doc.rate.max(1));
    if doc.rate == 0 {
        return Err(
            "rate must be at least 1 packet per second (leave the class out for no budget)".into(),
        );
    }
    if burst == 0 {
        return Err("burst must be at least 1 packet".into());
    }
    Ok(Budget {
        rate: doc.rate,
        burst,
    })
}
