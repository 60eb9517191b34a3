// Text and markup helpers shared by the settings modal and the card panel: translated strings,
// Kommo's system controls tagged with our data-ms test hooks, escaping and dates.
define(['jquery'], function ($) {
  'use strict';

  var LOCALES = {en: 'en-GB', es: 'es-ES', pt: 'pt-BR'};

  function Ui(widget) {
    this.widget = widget;
  }

  // Kommo's i18n() resolves a top-level key; the rest of the dotted path is walked here so the
  // widget works whether or not the host resolves deeper paths itself.
  Ui.prototype.lookup = function (path) {
    var parts = path.split('.');
    var node = this.widget.i18n(parts[0]);
    for (var i = 1; i < parts.length && node != null; i += 1) {
      node = typeof node === 'object' ? node[parts[i]] : undefined;
    }
    return node;
  };

  Ui.prototype.has = function (path) {
    return typeof this.lookup(path) === 'string';
  };

  Ui.prototype.t = function (path, vars) {
    var text = this.lookup(path);
    if (typeof text !== 'string') {
      return path;
    }
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return vars && vars[name] != null ? String(vars[name]) : whole;
    });
  };

  Ui.prototype.esc = function (text) {
    return $('<div>').text(text == null ? '' : String(text)).html();
  };

  // A system control (select, input, button, checkbox, textarea) with `data-ms` on the element
  // that carries the value, so tests and our own handlers find it the same way in Kommo and in
  // the sandbox.
  Ui.prototype.control = function (kind, params, hook) {
    var html = this.widget.render({ref: '/tmpl/controls/' + kind + '.twig'}, params);
    var $wrap = $('<div>').html(html);
    var $target = params.name ? $wrap.find('[name="' + params.name + '"]') : $();
    if (!$target.length) {
      $target = $wrap.find('button, select, textarea, input').first();
    }
    $target.attr('data-ms', hook);
    return $wrap.children();
  };

  Ui.prototype.select = function (name, items, selected, hook) {
    return this.control('select', {name: name, items: items, selected: selected == null ? '' : String(selected),
      class_name: 'mailsync__select'}, hook);
  };

  Ui.prototype.button = function (name, text, hook, extraClass) {
    return this.control('button', {name: name, text: text,
      class_name: 'mailsync__button' + (extraClass ? ' ' + extraClass : '')}, hook);
  };

  Ui.prototype.checkbox = function (name, checked, text, hook) {
    return this.control('checkbox', {name: name, checked: !!checked, text: text,
      class_name: 'mailsync__checkbox'}, hook);
  };

  Ui.prototype.input = function (name, value, placeholder, hook, type) {
    return this.control('input', {name: name, value: value || '', placeholder: placeholder || '',
      type: type || 'text', class_name: 'mailsync__input'}, hook);
  };

  Ui.prototype.lang = function () {
    var app = window.APP;
    return (app && app.lang_id) || 'en';
  };

  Ui.prototype.when = function (iso) {
    if (!iso) {
      return '';
    }
    var date = new Date(iso);
    if (isNaN(date.getTime())) {
      return String(iso);
    }
    return date.toLocaleString(LOCALES[this.lang()] || undefined,
      {day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit'});
  };

  // A count in the user's language (20,000 / 20.000).
  Ui.prototype.number = function (n) {
    var value = Number(n) || 0;
    try {
      return value.toLocaleString(LOCALES[this.lang()] || undefined);
    } catch (ignored) {
      return String(value);
    }
  };

  Ui.prototype.providerName = function (kind) {
    return {mailerlite: 'MailerLite', mailchimp: 'Mailchimp'}[kind] || this.t('activity.platform');
  };

  // A status line for inline results: kind is "ok", "error" or "info".
  Ui.prototype.say = function ($where, kind, text) {
    $where.removeClass('mailsync__note_ok mailsync__note_error mailsync__note_info')
      .addClass(text ? 'mailsync__note_' + kind : '').text(text || '');
  };

  return Ui;
});
