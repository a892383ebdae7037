//! `[classes]`: named budgets, which the access zone and the allowlists refer to, and the
//! request budgets by method of each (`methods = { register = { rate = 1, burst = 5 } }`).

use std::{collections::BTreeMap, ops::Range};

use sipguard_common::abi::CLASS_NAME_LEN;
use toml::Spanned;

use super::{
    ParseContext,
    doc::{BudgetDoc, ClassDoc, MethodsDoc, RequestBudgetDoc},
};
use crate::policy::{Budget, MAX_CLASSES, sip::MethodBudgets};

impl ParseContext<'_> {
    /// `[classes]`: each name must fit the kernel's class table and each budget must be usable.
    /// Gives the method budgets of the classes that have any.
    pub(super) fn read_classes(
        &mut self,
        classes: &BTreeMap<String, Spanned<ClassDoc>>,
    ) -> BTreeMap<String, MethodBudgets> {
        let mut method_budgets = BTreeMap::new();
        for (name, class) in classes {
            if !is_valid_class_name(name) {
                self.report_at(
                    class.span(),
                    format!(
                        "class name '{name}': use up to {} letters, digits, '-' or '_'",
                        CLASS_NAME_LEN - 1
                    ),
                );
            }
            let label = format!("class {name}");
            if let Some(checked) =
                self.read_budget_at(&label, class.span(), &class.get_ref().budget())
            {
                self.classes.insert(name.clone(), checked);
            }
            if let Some(methods) = &class.get_ref().methods {
                let budgets = self.read_method_budgets(&label, methods);
                if !budgets.is_empty() {
                    method_budgets.insert(name.clone(), budgets);
                }
            }
        }
        method_budgets
    }

    /// `methods`: REGISTER, INVITE, OPTIONS and every other request, each optional.
    fn read_method_budgets(&mut self, label: &str, methods: &MethodsDoc) -> MethodBudgets {
        let mut read = |method: &str, budget: Option<&Spanned<RequestBudgetDoc>>| {
            budget.and_then(|budget| {
                self.read_request_budget(&format!("{label}: methods.{method}"), budget)
            })
        };
        MethodBudgets {
            register: read("register", methods.register.as_ref()),
            invite: read("invite", methods.invite.as_ref()),
            options: read("options", methods.options.as_ref()),
            other: read("other", methods.other.as_ref()),
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
        self.read_budget_at(label, budget.span(), budget.get_ref())
    }

    /// [`Self::read_budget`] of a budget written at `span`.
    fn read_budget_at(
        &mut self,
        label: &str,
        span: Range<usize>,
        budget: &BudgetDoc,
    ) -> Option<Budget> {
        match check_budget(budget) {
            Ok(checked) => Some(checked),
            Err(message) => {
                self.report_at(span, format!("{label}: {message}"));
                None
            }
        }
    }
}

/// Names of classes, and of what is named like them (destination budgets, destination rules,
/// scanner signatures): the kernel keeps up to `CLASS_NAME_LEN - 1` bytes.
pub(super) fn is_valid_class_name(name: &str) -> bool {
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
