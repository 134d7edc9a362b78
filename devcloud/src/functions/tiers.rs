//! Subscription tiers and the model catalog: one table each, shared by `ai-proxy` (daily
//! limit, model gate), `cloud-models` (what a tier sees) and `cloud-usage` (the limit shown).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    /// Order of the tiers: a model requiring rank r is available from rank r up.
    pub rank: u8,
    /// Tokens per UTC day for the whole organization; `None` is unlimited.
    pub daily_tokens: Option<i64>,
}

pub const TIERS: [Tier; 4] = [
    Tier {
        name: "free",
        rank: 0,
        daily_tokens: Some(10_000),
    },
    Tier {
        name: "pro",
        rank: 1,
        daily_tokens: Some(1_000_000),
    },
    Tier {
        name: "team",
        rank: 2,
        daily_tokens: Some(5_000_000),
    },
    Tier {
        name: "enterprise",
        rank: 3,
        daily_tokens: None,
    },
];

/// The tier by name; an unknown tier gets the free tier's limits.
pub fn tier(name: &str) -> Tier {
    TIERS
        .iter()
        .copied()
        .find(|t| t.name == name)
        .unwrap_or(TIERS[0])
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Model {
    pub id: &'static str,
    pub display_name: &'static str,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub supports_tool_calling: bool,
    pub supports_streaming: bool,
    pub cost_tier: &'static str,
    pub reasoning: bool,
    pub tier_required: &'static str,
}

/// The built-in, deterministic local model (see `echo`).
pub const ECHO_MODEL: &str = "oboto/echo-1";

pub const MODELS: [Model; 6] = [
    Model {
        id: ECHO_MODEL,
        display_name: "Oboto Echo 1 (local)",
        context_window: 128_000,
        max_output_tokens: 65_536,
        supports_tool_calling: false,
        supports_streaming: true,
        cost_tier: "free",
        reasoning: false,
        tier_required: "free",
    },
    Model {
        id: "openai/gpt-4o-mini",
        display_name: "GPT-4o mini",
        context_window: 128_000,
        max_output_tokens: 16_384,
        supports_tool_calling: true,
        supports_streaming: true,
        cost_tier: "low",
        reasoning: false,
        tier_required: "free",
    },
    Model {
        id: "openai/gpt-4o",
        display_name: "GPT-4o",
        context_window: 128_000,
        max_output_tokens: 16_384,
        supports_tool_calling: true,
        supports_streaming: true,
        cost_tier: "medium",
        reasoning: false,
        tier_required: "pro",
    },
    Model {
        id: "anthropic/claude-sonnet-4",
        display_name: "Claude Sonnet 4",
        context_window: 200_000,
        max_output_tokens: 64_000,
        supports_tool_calling: true,
        supports_streaming: true,
        cost_tier: "medium",
        reasoning: true,
        tier_required: "pro",
    },
    Model {
        id: "openai/o3",
        display_name: "OpenAI o3",
        context_window: 200_000,
        max_output_tokens: 100_000,
        supports_tool_calling: true,
        supports_streaming: true,
        cost_tier: "high",
        reasoning: true,
        tier_required: "team",
    },
    Model {
        id: "anthropic/claude-opus-4",
        display_name: "Claude Opus 4",
        context_window: 200_000,
        max_output_tokens: 32_000,
        supports_tool_calling: true,
        supports_streaming: true,
        cost_tier: "high",
        reasoning: true,
        tier_required: "enterprise",
    },
];

pub fn model(id: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == id)
}

/// Whether a tier may use a model.
pub fn allows(tier: Tier, model: &Model) -> bool {
    self::tier(model.tier_required).rank <= tier.rank
}

/// The models a tier sees, in catalog order.
pub fn models_for(tier: Tier) -> Vec<&'static Model> {
    MODELS.iter().filter(|m| allows(tier, m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(t: &str) -> Vec<&'static str> {
        models_for(tier(t)).iter().map(|m| m.id).collect()
    }

    #[test]
    fn tiers_filter_the_catalog() {
        assert_eq!(ids("free"), [ECHO_MODEL, "openai/gpt-4o-mini"]);
        let pro = ids("pro");
        assert!(pro.contains(&"openai/gpt-4o") && !pro.contains(&"openai/o3"));
        assert!(
            ids("team").contains(&"openai/o3") && !ids("team").contains(&"anthropic/claude-opus-4")
        );
        assert_eq!(ids("enterprise").len(), MODELS.len());
        assert_eq!(ids("bogus"), ids("free"));
    }

    #[test]
    fn limits() {
        assert_eq!(tier("free").daily_tokens, Some(10_000));
        assert_eq!(tier("pro").daily_tokens, Some(1_000_000));
        assert_eq!(tier("team").daily_tokens, Some(5_000_000));
        assert_eq!(tier("enterprise").daily_tokens, None);
        // Every model's tier exists.
        assert!(MODELS
            .iter()
            .all(|m| TIERS.iter().any(|t| t.name == m.tier_required)));
    }
}
