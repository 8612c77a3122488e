//! Keyboard focus on stage: egui keeps it only for typing. Tab (the panels' key) never walks
//! egui's focus onto a button (where Space would click it and every shortcut, the clicker's
//! included, would go quiet), a button never keeps the focus, and the talk can take the focus
//! back from a text field when the clicker moves on.

use bevy::prelude::*;
use bevy_egui::{EguiContext, EguiContexts, EguiInput, egui};

/// Whether a text field (or a popup) has the keyboard, as of the last egui pass; `release`
/// asks the next pass to take the focus from whatever has it.
#[derive(Resource, Default, Debug, Clone, Copy)]
pub struct KeyboardFocus {
    pub typing: bool,
    pub release: bool,
}

/// True when nothing is being typed into, so single-key shortcuts may act.
pub fn keyboard_free(focus: Option<Res<KeyboardFocus>>) -> bool {
    focus.is_none_or(|f| !f.typing)
}

/// Tab leaves egui's input unless a text field has the focus (there it leaves the field).
pub fn drop_tab(ctx: &egui::Context, input: &mut egui::RawInput) {
    if !ctx.text_edit_focused() {
        input.events.retain(|e| {
            !matches!(
                e,
                egui::Event::Key {
                    key: egui::Key::Tab,
                    ..
                }
            )
        });
    }
}

/// Before the pass's widgets: a focus that is not a text field's is dropped, and so is any focus
/// when `release` asks.
pub fn settle(ctx: &egui::Context, release: bool) {
    let typing = ctx.text_edit_focused();
    if let Some(id) = ctx.memory(|m| m.focused())
        && (release || !typing)
    {
        ctx.memory_mut(|m| m.surrender_focus(id));
    }
}

/// After the pass: what the shortcuts of the next frame go by.
pub fn typing(ctx: &egui::Context) -> bool {
    ctx.text_edit_focused() || ctx.any_popup_open()
}

/// Between reading the window's input and the egui pass.
pub(super) fn keep_tab_from_egui(mut contexts: Query<(&mut EguiInput, &mut EguiContext)>) {
    for (mut input, mut ctx) in &mut contexts {
        drop_tab(ctx.get_mut(), &mut input.0);
    }
}

/// First in the pass.
pub(super) fn settle_focus(mut contexts: EguiContexts, mut focus: ResMut<KeyboardFocus>) {
    if let Ok(ctx) = contexts.ctx_mut() {
        settle(ctx, std::mem::take(&mut focus.release));
    }
}

/// Last in the pass.
pub(super) fn record_focus(mut contexts: EguiContexts, mut focus: ResMut<KeyboardFocus>) {
    if let Ok(ctx) = contexts.ctx_mut() {
        focus.typing = typing(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pass of a top bar's kind of UI (a tab, a checkbox, a button) and a prompt box, with
    /// these events; `settle` first when asked, as the app runs it.
    fn pass(ctx: &egui::Context, events: Vec<egui::Event>, filter: bool, release: bool) {
        let mut input = egui::RawInput {
            events,
            ..Default::default()
        };
        if filter {
            drop_tab(ctx, &mut input);
        }
        let mut text = String::from("Why is the sky blue?");
        let mut out = ctx.run_ui(input, |ui| {
            if filter {
                settle(ui.ctx(), release);
            }
            let _ = ui.selectable_label(true, "1 Matrices & light");
            let mut on = true;
            ui.checkbox(&mut on, "Large UI (U)");
            let _ = ui.button("Fullscreen (F11)");
            ui.add(egui::TextEdit::multiline(&mut text).id(egui::Id::new("prompt")));
        });
        // No painter here: the font atlas's upload is dropped on purpose.
        out.textures_delta.clear();
    }

    fn key(key: egui::Key) -> egui::Event {
        egui::Event::Key {
            key,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers: egui::Modifiers::NONE,
        }
    }

    #[test]
    fn tab_gives_no_button_the_keyboard() {
        // Unfiltered, egui hands the first widget the focus on Tab: the app's keys go quiet.
        let ctx = egui::Context::default();
        pass(&ctx, vec![], false, false);
        pass(&ctx, vec![key(egui::Key::Tab)], false, false);
        pass(&ctx, vec![], false, false);
        assert!(ctx.memory(|m| m.focused()).is_some());
        assert!(!ctx.text_edit_focused());
        // A button with the focus (however it came) loses it before the next pass's widgets.
        pass(&ctx, vec![], true, false);
        assert_eq!(ctx.memory(|m| m.focused()), None);
        // As the app runs it: nothing has the focus, the shortcuts stay live.
        let ctx = egui::Context::default();
        for events in [vec![], vec![key(egui::Key::Tab)], vec![], vec![]] {
            pass(&ctx, events, true, false);
        }
        assert_eq!(ctx.memory(|m| m.focused()), None);
        assert!(!typing(&ctx));
    }

    #[test]
    fn a_text_field_keeps_the_focus_until_released() {
        let ctx = egui::Context::default();
        pass(&ctx, vec![], true, false);
        let tab_left = |ctx: &egui::Context| {
            let mut input = egui::RawInput {
                events: vec![key(egui::Key::Tab), key(egui::Key::A)],
                ..Default::default()
            };
            drop_tab(ctx, &mut input);
            input.events.len()
        };
        assert_eq!(tab_left(&ctx), 1, "Tab is the panels' key");
        // The prompt box, focused (as a click on it does): kept, and it counts as typing.
        ctx.memory_mut(|m| m.request_focus(egui::Id::new("prompt")));
        pass(&ctx, vec![], true, false);
        pass(&ctx, vec![], true, false);
        assert!(typing(&ctx));
        assert_eq!(tab_left(&ctx), 2, "Tab in a field is the field's");
        // The clicker moved on: released.
        pass(&ctx, vec![], true, true);
        pass(&ctx, vec![], true, false);
        assert!(!typing(&ctx));
        assert_eq!(ctx.memory(|m| m.focused()), None);
    }
}
